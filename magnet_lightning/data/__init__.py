"""Token shards: writing them (tokenize), reading them (shards, pipeline) and the LightningDataModule.

Import the submodules directly (e.g. ``from magnet_lightning.data.datamodule import TokenDataModule``); this package
imports nothing heavy.
"""
