"""Batches built in the worker process are those built in place."""

import torch

from vtprune.proving_ground.model import build_processor
from vtprune.proving_ground.training.packing import Packer
from vtprune.proving_ground.training.prefetch import QuestionJob, VisionJob, prefetched


def test_prefetched_batches_equal_batches_built_in_place():
    jobs = [QuestionJob("train", 4 * k, 2, 1, 100 if k < 2 else 576, seed=k) for k in range(4)]
    jobs.append(VisionJob(1000, 2))
    packer = Packer(build_processor().tokenizer)
    fetched = list(prefetched(iter(jobs), depth=2))
    assert len(fetched) == len(jobs)
    for job, got in zip(jobs, fetched):
        expected = job.build(packer)
        assert torch.equal(got.pixel_values, expected.pixel_values)
        assert torch.equal(got.patch_targets, expected.patch_targets)
        if isinstance(job, QuestionJob):
            assert torch.equal(got.packed.input_ids, expected.packed.input_ids)
            assert torch.equal(got.packed.position_ids, expected.packed.position_ids)
            assert got.families == expected.families
            assert torch.equal(got.anchors.count_targets, expected.anchors.count_targets)
            visual = got.packed.visual_index
            assert (visual is None) == (job.visual_tokens == 576)
    # the subset is the job's own: another seed draws another one
    other = QuestionJob("train", 0, 2, 1, 100, seed=99).build(packer)
    assert not torch.equal(other.packed.visual_index, fetched[0].packed.visual_index)
