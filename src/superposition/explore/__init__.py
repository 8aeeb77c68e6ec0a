"""``superposition explore``: a local page to train toy models and watch them learn (layer 5).

:func:`~superposition.explore.server.start_server` binds a standard-library HTTP server on
127.0.0.1. Its page (:mod:`~superposition.explore.page`) sets n, m, density, importance,
correlation, model kind and seeds (:mod:`~superposition.explore.form`), trains on the CPU in a
background thread (:mod:`~superposition.explore.job`) and redraws ``W^T W``, the feature geometry
and the loss (:mod:`~superposition.explore.frames`) while it trains. ``import superposition`` does
not import this package.
"""
