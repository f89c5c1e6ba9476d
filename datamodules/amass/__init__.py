"""AMASS data: synthetic demo tree (`demo`), preparation into memory-mapped arrays (`prepare`),
and the LightningDataModule serving batches of body poses (`datamodule`).

Submodules are imported explicitly (`from datamodules.amass.prepare import prepare_amass`) so that
preparing data does not import torch or Lightning.
"""
