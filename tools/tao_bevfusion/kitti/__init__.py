"""KITTI on disk: the dataset preflight (`check_dataset`) and the frame readers (calib, labels, points)."""
