"""The two model families on one trunk: `magnet` (MagnetTransformer: masked, non-autoregressive) and `ar`
(the autoregressive, MusicGen-style family); `layers` and `base` hold what they share."""
