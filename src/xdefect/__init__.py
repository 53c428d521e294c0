"""xdefect: automated X-ray inspection of castings.

Stages (one module each, data flowing one way):
``gdxray`` (images, ground truth, casting mask) -> ``simulate`` (ellipsoidal defects)
-> ``patches`` (32x32 datasets) -> ``models`` / ``train`` (Xnet-II) -> ``detect``
(score map, regions) -> ``evaluate`` (IoU matching, AP) -> ``report``; ``cli`` is the
command line.

Box convention used everywhere in xdefect: ``(x1, y1, x2, y2)`` in pixels, 0-based,
half-open (``x2``/``y2`` exclusive); x is the column, y the row.
"""

__version__ = "0.1.0"
