"""Training half: polymer library, spectrum simulator, mixture generator (and, later, models)."""
