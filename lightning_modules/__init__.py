"""Lightning modules: one per task, thin wiring over pose_prior."""
