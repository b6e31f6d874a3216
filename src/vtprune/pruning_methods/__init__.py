"""Each built-in method's selection code: pure functions over tensors, no model code.

A method's config, in :mod:`vtprune.configs`, names its selection functions by module
and name (:func:`vtprune.registry.lazy_select`); a module here is imported when a
stage first selects, which is the first time torch is needed.
"""
