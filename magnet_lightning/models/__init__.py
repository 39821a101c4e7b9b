"""The model families on one trunk: MAGNeT (`magnet.py`, masked, non-autoregressive), the autoregressive MusicGen
family (`ar.py`, causal over the delay pattern) and Hybrid-MAGNeT (`hybrid.py`, an autoregressive prompt then MAGNeT,
one model); `layers` and `base` hold what they share, `registry` the family table."""
