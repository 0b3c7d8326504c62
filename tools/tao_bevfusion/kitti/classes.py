"""KITTI object classes, and which of them the 5.5 converter trains as `person` (one home for both).

The 5.5 converter maps KITTI `Pedestrian` to `person` and drops every other class, `DontCare` included
(docs/container-contract.md §3.5): a raw label spelled `person` is not a KITTI class and is dropped too.
"""

KITTI_CLASSES = frozenset(
    {"Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare"}
)
PERSON_CLASSES = frozenset({"Pedestrian"})
