"""Training: the one engine every plugin runs under (on accelerate), its settings,
the seeded data order and the step context plugins see."""
