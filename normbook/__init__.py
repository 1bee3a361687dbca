"""normbook: the book's helpers, built on the library :mod:`normlib`.

normlib is the library (layers, functional ops, the statistics core, the fast
kernels) and depends on numpy, torch and array-api-compat only.  This package
holds what the chapters need besides the layers, and may depend on plotting,
data and progress-bar packages (``pip install -e .[book]``):

* :mod:`normbook.plotting`: the N, C, H×W cube drawn from a StatSet;
* :mod:`normbook.images`: the sample photos of the Instance Norm chapter;
* :mod:`normbook.datasets`: scikit-learn's digits and photos, read without importing it;
* :mod:`normbook.digits_sweep`: the batch-size sweep on scikit-learn's digits;
* :mod:`normbook.training_probes`: activations and the loss along a gradient step;
* :mod:`normbook.least_squares`: gradient descent on least squares (conditioning);
* :mod:`normbook.timing`: timings against PyTorch's kernels and pass counting;
* :mod:`normbook.notebook`: the set-up every chapter runs first, and ``glue``.

Dependencies point one way: normbook imports normlib, normlib never imports
normbook (``tests/normbook/test_layering.py`` checks it).
"""
