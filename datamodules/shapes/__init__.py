"""Body-shape data for the shape priors: readers (SURREAL, AMASS betas, the open shape set), seeded splits
with a manifest, and the DataModules serving betas or (pose, betas) pairs."""
