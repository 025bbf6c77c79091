"""Datasets: the synthetic shapes-vqa, on-disk formats, and answer scoring."""

from knoblab.data.sample import Sample, VQADataset

__all__ = ["Sample", "VQADataset"]
