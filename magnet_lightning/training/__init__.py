"""Training: the LightningModule of every family (`lit_module`), each family's objective (`families`, `objective`,
`masking`), optimiser and schedule, EMA, checkpoint writes and distributed strategies."""
