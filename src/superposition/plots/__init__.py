"""Figures: one function per figure, records in, matplotlib figure out (layer 4).

Importing a figure module imports matplotlib (the non-interactive Agg backend unless another one
was chosen); ``import superposition`` never does.
"""
