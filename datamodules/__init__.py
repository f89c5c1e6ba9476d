"""LightningDataModules and data preparation (AMASS, H3.6M, EFT-COCO, synthetic)."""
