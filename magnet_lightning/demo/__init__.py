"""The self-contained CPU demo: a synthetic, captioned music corpus tokenized into shards (see `corpus`)."""
