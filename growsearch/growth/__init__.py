"""Growth operators: widening/shrinking primitives, initialisers, freeze policy, optimizer
rebuild (checkpoints of grown models live in :mod:`growsearch.backbones.checkpoint`)."""
