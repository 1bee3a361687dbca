"""The batch-size experiment's pieces: data split, stacked CNN, training loop, noise measurement."""
import numpy as np
import pytest
import torch

import normlib.nn as nnn
from normbook.digits_sweep import (
    WU_HE_2018,
    Digits,
    StackedCNN,
    batch_stat_noise,
    evaluate,
    evaluate_in_batches,
    load_digits_split,
    make_norm,
    run_sweep,
    stack_input,
    train_stack,
    with_population_stats,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def tiny(digits):
    return Digits(digits.x_train[:128], digits.y_train[:128], digits.x_test[:200], digits.y_test[:200])


def test_paper_numbers_give_the_reviews_gap():
    assert round(WU_HE_2018["BN"][2] - WU_HE_2018["GN"][2], 1) == 10.6
    assert set(WU_HE_2018["BN"]) == set(WU_HE_2018["GN"]) == {32, 16, 8, 4, 2}


def test_split_is_fixed_stratified_and_standardized(digits):
    again = load_digits_split()
    assert torch.equal(digits.x_train, again.x_train) and torch.equal(digits.y_test, again.y_test)
    assert digits.x_train.shape == (1024, 1, 8, 8) and digits.x_test.shape == (773, 1, 8, 8)
    assert digits.x_train.dtype == torch.float32
    counts = np.bincount(digits.y_train.numpy(), minlength=10)
    assert counts.min() >= 99 and counts.max() <= 105  # 1024 of 1797, class shares kept
    assert abs(float(digits.x_train.mean())) < 1e-5 and abs(float(digits.x_train.std()) - 1) < 1e-3
    with pytest.raises(ValueError, match=r"load_digits_split: n_train must be in \[10, 1787\], got 5"):
        load_digits_split(n_train=5)


def test_make_norm_builds_blockwise_normlib_layers():
    assert isinstance(make_norm("BN", 3, 8), nnn.BatchNorm2d)
    ln = make_norm("LN", 3, 8)
    assert isinstance(ln, nnn.GroupNorm) and ln.num_groups == 3 and ln.num_channels == 24
    gn = make_norm("GN", 3, 8, channels_per_group=4)
    assert gn.num_groups == 6
    assert isinstance(make_norm("IN", 3, 8), nnn.InstanceNorm2d)
    with pytest.raises(ValueError, match="make_norm: unknown method 'XN'"):
        make_norm("XN", 1, 8)
    with pytest.raises(ValueError, match="make_norm: channels=6 is not divisible by channels_per_group=4"):
        make_norm("GN", 1, 6)


@pytest.mark.parametrize("method", ["BN", "GN", "LN", "IN", "WS+GN"])
def test_a_copy_in_the_stack_computes_what_it_computes_alone(method, digits):
    methods = ["BN", "GN", "LN", "IN", "WS+GN"]
    stack = StackedCNN(methods, seeds=[0, 5])
    alone = StackedCNN([method], seeds=[5])
    x = digits.x_train[:6]
    k = methods.index(method) * 2 + 1
    torch.testing.assert_close(stack(x.expand(-1, 10, -1, -1))[:, k], alone(x)[:, 0], rtol=1e-5, atol=1e-5)


def test_copies_get_only_their_own_gradient(digits):
    stack = StackedCNN(["BN", "GN"], seeds=[0, 1])
    out = stack(digits.x_train[:4].expand(-1, 4, -1, -1))
    out[:, 3].sum().backward()
    g = stack.weights[1].grad.view(4, 32, 16, 3, 3)
    assert g[:3].abs().max() == 0 and g[3].abs().max() > 0
    assert stack.fc_weight.grad[:3].abs().max() == 0


def test_same_seed_same_initial_weights_across_methods():
    stack = StackedCNN(["BN", "IN"], seeds=[3])
    w = stack.weights[0].view(2, 16, 1, 3, 3)
    assert torch.equal(w[0], w[1])


def test_stacked_cnn_errors():
    with pytest.raises(ValueError, match="StackedCNN: unknown method 'foo'"):
        StackedCNN(["foo"], [0])
    with pytest.raises(ValueError, match=r"StackedCNN: expected input of shape \[B, 2, H, W\], got \[3, 1, 8, 8\]"):
        StackedCNN(["GN"], [0, 1])(torch.zeros(3, 1, 8, 8))


def test_stack_input_places_seed_batches_side_by_side(digits):
    order = torch.tensor([[0, 1], [5, 6]])
    xb = stack_input(digits.x_train, order, repeats=2)
    assert xb.shape == (2, 4, 8, 8)
    assert torch.equal(xb[1, 1], digits.x_train[6, 0]) and torch.equal(xb[1, 3], digits.x_train[6, 0])


def test_training_is_deterministic_and_learns(tiny):
    kw = dict(batch_size=8, epochs=4, lr_at_32=0.4)
    errs = [train_stack(StackedCNN(["BN", "GN"], [0, 1]), tiny, **kw) for _ in range(2)]
    np.testing.assert_array_equal(errs[0], errs[1])
    assert errs[0].shape == (4,) and errs[0].max() < 40  # chance is 90 %
    with pytest.raises(ValueError, match="train_stack: batch_size=7 must divide the 128 training images"):
        train_stack(StackedCNN(["GN"], [0]), tiny, batch_size=7)


def test_run_sweep_shapes_and_kept_models(tiny):
    r = run_sweep(tiny, methods=("GN",), batch_sizes=(32, 16), seeds=(0, 1), epochs=1, progress=False, keep_models=(16,))
    assert r.errors.shape == (2, 1, 2) and list(r.models) == [16]
    assert r.error("GN", 16) == pytest.approx(r.errors[1, 0].mean())
    assert r.std().shape == (2, 1)


def test_batch_stat_noise_follows_one_over_sqrt_b_for_independent_data():
    x = torch.randn(4000, 2, 1, 1, generator=torch.Generator().manual_seed(0))
    sizes = [2, 8, 32, 128]
    m, v = batch_stat_noise(x, sizes, n_batches=400)
    np.testing.assert_allclose(m, 1 / np.sqrt(sizes), rtol=0.15)
    assert np.polyfit(np.log(sizes), np.log(m), 1)[0] == pytest.approx(-0.5, abs=0.06)
    assert (np.diff(v) < 0).all()


def test_population_stats_and_batch_mode_evaluation(tiny):
    model = StackedCNN(["BN"], [0])
    train_stack(model, tiny, batch_size=16, epochs=1)
    twin = with_population_stats(model, tiny.x_train)
    with torch.no_grad():
        pre = model.pre_norm(tiny.x_train, 0)
    bn0 = twin.norms[0].norms[0]
    torch.testing.assert_close(bn0.running_mean, pre.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn0.running_var, pre.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-5)
    before = model.norms[0].norms[0].running_mean.clone()
    err = evaluate_in_batches(model, tiny.x_test, tiny.y_test, 4)
    assert err.shape == (1,) and torch.equal(model.norms[0].norms[0].running_mean, before)
    assert evaluate(model, tiny.x_test, tiny.y_test).shape == (1,)


def test_one_thread_restores_the_thread_count():
    from normbook.digits_sweep import one_thread

    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert one_thread()(torch.get_num_threads)() == 1


def test_neighbouring_gn_and_ws_gn_share_one_norm_layer_and_stay_exact(digits):
    stack = StackedCNN(["GN", "WS+GN"], seeds=[0, 1])
    assert all(len(n.norms) == 1 for n in stack.norms)  # one GroupNorm call per layer, not two
    x = digits.x_train[:4]
    out = stack(x.expand(-1, 4, -1, -1))
    for k, (method, seed) in enumerate([("GN", 0), ("GN", 1), ("WS+GN", 0), ("WS+GN", 1)]):
        torch.testing.assert_close(out[:, k], StackedCNN([method], [seed])(x)[:, 0], rtol=1e-5, atol=1e-5)


def test_conv_weight_standardizes_exactly_the_ws_rows():
    from normlib.weight_standardization import standardize_weight

    stack = StackedCNN(["WS+GN", "BN", "WS+GN"], seeds=[0, 1])
    assert [len(n.norms) for n in stack.norms] == [3, 3, 3]
    w, used = stack.weights[1], stack.conv_weight(1)
    rows = 2 * 32  # two seeds x 32 output channels per method
    torch.testing.assert_close(used[:rows], standardize_weight(w[:rows]))
    assert torch.equal(used[rows : 2 * rows], w[rows : 2 * rows])
    torch.testing.assert_close(used[2 * rows :], standardize_weight(w[2 * rows :]))


def test_run_sweep_in_worker_processes_gives_bitwise_the_same_results_and_models(tiny):
    kw = dict(methods=("BN", "GN"), batch_sizes=(32, 16, 8), seeds=(0, 1), epochs=1, progress=False,
              keep_models=(8,))
    serial = run_sweep(tiny, **kw)
    forked = run_sweep(tiny, processes=2, **kw)
    np.testing.assert_array_equal(forked.errors, serial.errors)
    assert list(forked.models) == [8]
    for (name, a), (_, b) in zip(serial.models[8].state_dict().items(), forked.models[8].state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.get_num_threads() == 1  # the conftest's count, untouched


def test_run_sweep_checks_every_batch_size_before_training(tiny):
    with pytest.raises(ValueError, match="run_sweep: batch size 7 must divide the 128 training images"):
        run_sweep(tiny, methods=("GN",), batch_sizes=(32, 7), seeds=(0,), epochs=1, progress=False, processes=2)


def test_fork_map_yields_every_result_in_the_order_asked():
    from normbook.digits_sweep import fork_map

    args = [3, 1, 4, 1, 5]
    for processes in (1, 2):
        got = list(fork_map(lambda a: a * a, args, processes, order=[4, 0, 2, 1, 3]))
        assert got == [(4, 25), (0, 9), (2, 16), (1, 1), (3, 1)]
    assert list(fork_map(abs, [-2])) == [(0, 2)]
