"""Training: the tiny vision-language model, and what trains it."""
