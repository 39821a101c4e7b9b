"""The interactive app (`magnet-app`, `python -m magnet_lightning.app`): a Gradio page that generates from captions,
continues or infills an uploaded or recorded clip, and compares two settings or two checkpoints side by side.

Layer: above generation, data, metrics, callbacks and demo; below cli (the command line in `cli/app.py` checks the
arguments and starts the server built here).

- `traits`: what each loaded checkpoint's family takes (decoding options and their controls, prompt, infill, rescorer).
- `engine`: the loaded models (once) and one worker thread that runs every generation, batching waiting requests of
  identical settings into one.
- `requests`: the page's values -> a checked `Request` (limits on duration, captions, text length, audio).
- `outputs`: WAV, tokens (.npy) and the spectrogram picture of a result.
- `ui`: the page (gradio Blocks) and its handlers; `launch` starts the server.

Importing this package loads nothing heavy.
"""
