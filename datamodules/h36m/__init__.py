"""H3.6M Protocol-2 evaluation data (SPIN's h36m_valid_protocol2.npz + 2D keypoints to fit)."""
