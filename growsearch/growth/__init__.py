"""Growth operators: widening/shrinking primitives, initialisers, freeze policy, optimizer
rebuild and checkpoints of grown models."""
