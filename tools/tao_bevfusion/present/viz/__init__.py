"""Pictures (training curve, detections, evaluations) and their summaries (KITTI geometry, BEV, camera, AP table).

Box convention (TAO 5.5 BEVFusion, `TAOLiDARInstance3DBoxes`): each row of `bboxes_3d` is
(x, y, z, dx, dy, dz, rx, ry, rz) in LiDAR coordinates, (x, y, z) the *bottom* centre of the box
(origin (0.5, 0.5, 0.0)), dx along the heading, and the rotation R = Rz(rz) @ Ry(ry) @ Rx(rx).
For KITTI, rx = ry = 0 and rz = -rotation_y - pi/2. Seven-value rows (mmdet3d >= 1.0
`LiDARInstance3DBoxes`: x, y, z_bottom, dx, dy, dz, yaw) are read as rx = ry = 0, rz = yaw.
"""
