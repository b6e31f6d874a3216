"""The 2-D start of the vision tower's position embeddings, and the position loss."""

import pytest
import torch

from vtprune.proving_ground import scene_questions
from vtprune.proving_ground.model import ModelSize, build_model, build_processor
from vtprune.proving_ground.training.objective import PositionHead, patch_coordinates, patch_targets
from vtprune.proving_ground.training.positions import grid_position_table, start_with_grid_positions


def _r2(features: torch.Tensor, target: torch.Tensor) -> float:
    """R^2 of the least-squares linear fit of ``target`` from ``features``."""
    design = torch.cat([features, torch.ones(len(features), 1)], dim=1).double()
    residual = target.double() - design @ (torch.linalg.pinv(design) @ target.double())
    return float(1 - residual.var() / target.double().var())


def test_halves_of_the_table_follow_the_column_and_the_row():
    table = grid_position_table(96, grid=24, norm=2.0).view(24, 24, 96)  # (row, col, channel)
    by_column, by_row = table[..., :48], table[..., 48:]
    assert torch.equal(by_column, by_column[:1].expand(24, -1, -1))  # the same in every row
    assert torch.equal(by_row, by_row[:, :1].expand(-1, 24, -1))  # the same in every column
    assert torch.allclose(table.norm(dim=-1), torch.full((24, 24), 2.0), atol=1e-5)
    assert torch.equal(by_column[0, 5], by_row[5, 0])  # one code per coordinate, on both axes


def test_both_coordinates_are_linearly_readable():
    table = grid_position_table(96, grid=24)
    coordinates = patch_coordinates(24)
    assert _r2(table, coordinates[:, 0]) > 0.999 and _r2(table, coordinates[:, 1]) > 0.999
    # ...and no two tokens share a code
    assert torch.cdist(table, table).add(torch.eye(576) * 10).min() > 0.1


def test_the_tower_starts_from_the_table():
    torch.manual_seed(0)
    model = build_model(ModelSize(), build_processor())
    start_with_grid_positions(model.model.vision_tower, norm=3.0)
    weight = model.model.vision_tower.embeddings.position_embedding.weight
    assert weight.requires_grad  # still a learned parameter
    assert torch.equal(weight[0], torch.zeros(96))  # CLS
    assert torch.allclose(weight[1:], grid_position_table(96, 24, 3.0))


def test_a_width_the_table_cannot_split_is_refused():
    with pytest.raises(ValueError, match="multiple of 4"):
        grid_position_table(30)


def test_patch_coordinates_are_raster_order_in_unit_range():
    coordinates = patch_coordinates(24)
    assert coordinates[0].tolist() == [-1.0, -1.0] and coordinates[23].tolist() == [1.0, -1.0]
    assert torch.allclose(coordinates[24], torch.tensor([-1.0, -1.0 + 2 / 23]))
    assert coordinates[575].tolist() == [1.0, 1.0]


def test_position_loss_is_the_error_on_object_and_tile_tokens_only():
    torch.manual_seed(0)
    scenes = [scene_questions("test", i)[0] for i in range(2)]
    targets = patch_targets(scenes)
    head = PositionHead(16)
    features = torch.randn(2, 576, 16)
    occupied = [set(o for obj in s.objects for o in obj.box.patches()) | set(o for t in s.tiles for o in t.box.patches())
                for s in scenes]
    coordinates = patch_coordinates(24)
    errors = []
    for b in range(2):
        for token in sorted(occupied[b]):
            predicted = head.out(head.norm(features[b, token]))
            errors.append(((predicted - coordinates[token]) ** 2).mean())
    assert torch.allclose(head.loss(features, targets), torch.stack(errors).mean(), atol=1e-6)
    # a background token does not move the loss
    background = next(t for t in range(576) if t not in occupied[0])
    moved = features.clone()
    moved[0, background] += 100.0
    assert torch.equal(head.loss(moved, targets), head.loss(features, targets))
