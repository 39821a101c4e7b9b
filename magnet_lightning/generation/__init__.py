"""Generation: each family's token decoder (`magnet`, `autoregressive`, `hybrid_magnet`), the table of what each
family takes (`families`), sampling, rescoring, two-model hybrid inference, and the generator API (`generator`)."""
