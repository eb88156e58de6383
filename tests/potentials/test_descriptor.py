"""The power-spectrum descriptor: harmonics, smoothness, analytic gradient, bounded size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from aiida_mlip.potentials.descriptor import (
    PowerSpectrumDescriptor,
    cutoff_envelope,
    real_spherical_harmonics,
)
from aiida_mlip.potentials.neighbours import neighbour_list, pad_neighbours


def _cluster_slots(positions, cutoff):
    centre, neighbour, shifts = neighbour_list(positions, np.zeros((3, 3)), [False] * 3, cutoff)
    return pad_neighbours(centre, neighbour, shifts, len(positions), 2 * cutoff + 1)


def _features(descriptor, positions, species):
    slots, shifts = _cluster_slots(positions.detach().numpy(), descriptor.cutoff)
    slots = torch.as_tensor(slots)
    vectors = positions[slots] - positions[:, None, :] + torch.as_tensor(shifts)
    return descriptor(vectors, species[slots])


def test_harmonics_are_orthonormal():
    unit = torch.as_tensor(np.random.default_rng(0).normal(size=(400_000, 3)))
    unit = unit / unit.norm(dim=1, keepdim=True)
    y = real_spherical_harmonics(unit)
    gram = (y.T @ y) * 4 * np.pi / len(unit)
    assert torch.allclose(gram, torch.eye(16, dtype=gram.dtype), atol=0.02)


def test_envelope_is_c2_at_the_cutoff():
    x = torch.tensor([1 - 1e-3, 1.0, 1.2], dtype=torch.float64, requires_grad=True)
    value, derivative = cutoff_envelope(x)
    (second,) = torch.autograd.grad(derivative.sum(), x)
    assert value.abs().max() < 1e-8 and derivative.abs().max() < 1e-4 and second.abs().max() < 0.1
    assert value[1:].abs().max() == 0 and derivative[1:].abs().max() == 0


def test_features_are_rotation_invariant_and_smooth_across_the_cutoff():
    descriptor = PowerSpectrumDescriptor(2, 4.0).double()
    rng = np.random.default_rng(1)
    positions = torch.as_tensor(rng.uniform(0, 3, (7, 3)))
    species = torch.as_tensor([0, 1, 0, 1, 1, 0, 0])
    reference = _features(descriptor, positions, species)
    rotation = torch.as_tensor(Rotation.random(random_state=2).as_matrix())
    assert torch.allclose(_features(descriptor, positions @ rotation.T, species), reference, atol=1e-12)
    # a lone neighbour just inside the cutoff contributes (almost) nothing
    pair = torch.tensor([[0.0, 0, 0], [4.0 - 1e-3, 0, 0]], dtype=torch.float64)
    assert _features(descriptor, pair, torch.tensor([0, 0])).abs().max() < 1e-9


def test_analytic_gradient_matches_autograd():
    descriptor = PowerSpectrumDescriptor(3, 4.5, n_radial=5, species_channels=2).double()
    rng = np.random.default_rng(3)
    positions = torch.as_tensor(rng.uniform(0, 4, (9, 3)))
    species = torch.as_tensor(rng.integers(0, 3, 9))
    slots, shifts = _cluster_slots(positions.numpy(), descriptor.cutoff)
    slots = torch.as_tensor(slots)
    weights = torch.as_tensor(rng.normal(size=(2, 9, descriptor.n_features)))
    moving = positions.clone().requires_grad_()
    vectors = moving[slots] - moving[:, None, :] + torch.as_tensor(shifts)
    features = descriptor(vectors, species[slots])
    expected = [torch.autograd.grad((features * w).sum(), moving, retain_graph=True)[0] for w in weights]
    geometry = descriptor.geometry(vectors.detach(), species[slots])
    density = descriptor.density(geometry)
    pair = descriptor.pair_gradient(geometry, descriptor.density_gradient(density, weights))  # (P, K, 3)
    for k in range(2):
        gradient = torch.zeros(9, 3, dtype=torch.float64)
        gradient.index_add_(0, slots.reshape(-1), pair[:, k])
        gradient -= pair[:, k].reshape(9, -1, 3).sum(1)
        assert torch.allclose(gradient, expected[k], atol=1e-10)


def test_feature_size_is_bounded_in_the_number_of_elements():
    sizes = [PowerSpectrumDescriptor(n, 5.0).n_features for n in (3, 5, 8)]
    assert sizes[0] == sizes[1] == sizes[2]
    assert PowerSpectrumDescriptor(1, 5.0).n_features == 8 + 36 * 4


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="l_max"):
        PowerSpectrumDescriptor(1, 5.0, l_max=4)
