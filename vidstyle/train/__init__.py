"""Training: loss network, losses, data, the loop, and Gatys optimisation for stills."""
