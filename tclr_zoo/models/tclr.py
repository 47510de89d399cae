"""The TCLR network: a video backbone with a temporal feature map plus the projection head.

``forward_pretrain`` runs all 2 + 2K clip groups of a pretraining step through the backbone in ONE
batch and all 2 + 2K + 2K head inputs through the projection head in one batch. With ``bn_mode="faithful"``
(default) every BatchNorm layer still normalises each clip group with its own statistics, exactly as
the reference code's ten separate forward passes (and eighteen head calls) do; see grouped_bn.py.
``bn_mode="shared"`` is a named departure: one set of statistics over all clips of the step.
"""

from __future__ import annotations

import torch
from torch import nn

from .grouped_bn import clip_groups, convert_to_grouped_bn
from .projection import ProjectionHead

BN_MODES = ("faithful", "shared")


class TCLRModel(nn.Module):
    """Backbone (``[B,3,T,H,W] -> [B,C,T',h,w]``) + projection head, with the TCLR pretraining forward."""

    def __init__(self, backbone: nn.Module, head_dim: int = 128, bn_mode: str = "faithful",
                 groups_per_pass: int | None = None, num_classes: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
        self.bn_mode = bn_mode
        # How many clip groups share one backbone pass (None: all). With faithful BatchNorm any
        # split gives the same numbers; it only trades kernel size against cache/memory use.
        self.groups_per_pass = groups_per_pass
        self.backbone = convert_to_grouped_bn(backbone)
        self.feature_dim = int(backbone.feature_dim)
        self.temporal_downsampling = int(backbone.temporal_downsampling)
        # The projection head (the "projection" output's module; "head" alone names an output).
        self.projection = convert_to_grouped_bn(ProjectionHead(self.feature_dim, out_dim=head_dim))
        self.register_load_state_dict_pre_hook(_load_old_projection_keys)
        self.classifier: nn.Linear | None = None
        self.dropout = nn.Dropout(dropout)
        if num_classes:
            self.add_classifier(num_classes, dropout)

    def add_classifier(self, num_classes: int, dropout: float = 0.0) -> nn.Linear:
        """Attach a fresh linear classifier on the globally pooled features (fine-tuning, linear probe)."""
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        self.dropout = nn.Dropout(dropout)
        return self.classifier

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, num_classes]``: backbone -> average over time and space -> dropout -> Linear."""
        if self.classifier is None:
            raise ValueError("this model has no classifier; fine-tune it first (tclr-zoo finetune / eval --save)")
        return self.classifier(self.dropout(self.backbone(x).mean(dim=(2, 3, 4))))

    def temporal_features(self, x: torch.Tensor) -> torch.Tensor:
        """Spatially averaged feature map ``[B, C, T']`` (the TCLR retrieval feature before flattening)."""
        return self.backbone(x).mean(dim=(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """With a classifier, its logits ``[B, num_classes]`` (what a model built with ``num_classes``
        is for, as in timm); without, the temporal features ``[B, C, T']``."""
        return self.logits(x) if self.classifier is not None else self.temporal_features(x)

    def forward_pretrain(self, global_clips: torch.Tensor, local_clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """Embeddings for one TCLR step.

        Args:
            global_clips: ``[2, B, 3, T, H, W]`` — two augmentations of each video's global clip.
            local_clips: ``[2, K, B, 3, T, H, W]`` — two augmentations of its K local clips.
        Returns:
            ``global_z [2,B,D]``, ``global_steps_z [2,B,K,D]``, ``local_z [2,B,K,D]``, L2-normalised.
        """
        _check_pretrain_shapes(global_clips, local_clips)
        num_local, videos = local_clips.shape[1], local_clips.shape[2]
        # Group order = the reference's call order: global aug0, global aug1, local aug0 k=0..K-1, aug1.
        groups = torch.cat([global_clips, local_clips.flatten(0, 1)], dim=0)  # [G, B, 3, T, H, W]
        feats = self._grouped_features(groups)  # [B, G, C, T']
        steps = feats.shape[-1]
        if steps != num_local:
            raise ValueError(
                f"the backbone gives {steps} time-steps for {global_clips.shape[3]}-frame clips, but the "
                f"global-local loss needs one per local clip ({num_local}); change frames or num_local"
            )
        head_in = _head_inputs(feats)  # [B, Gh, C]
        head_groups = head_in.shape[1]
        with clip_groups(self.projection, head_groups if self.bn_mode == "faithful" else 1):
            z = self.projection(head_in.reshape(videos * head_groups, self.feature_dim))
        return _split_embeddings(z.view(videos, head_groups, -1), num_local)


    def _grouped_features(self, groups: torch.Tensor) -> torch.Tensor:
        """``[G, B, 3, T, H, W]`` clip groups -> ``[B, G, C, T']`` features, ``groups_per_pass`` at a time."""
        num_groups, videos = groups.shape[:2]
        if self.bn_mode == "shared":
            chunks = [groups]  # one set of statistics over all clips needs them in one pass
        else:
            chunks = groups.split(self.groups_per_pass or num_groups, dim=0)
        outputs = []
        for chunk in chunks:  # in group order, so running statistics fold as in the reference
            batch = chunk.transpose(0, 1).reshape(videos * chunk.shape[0], *chunk.shape[2:])  # video-major
            if self._uses_channels_last():
                batch = batch.contiguous(memory_format=torch.channels_last_3d)
            with clip_groups(self.backbone, chunk.shape[0] if self.bn_mode == "faithful" else 1):
                feats = self.temporal_features(batch)  # [B*g, C, T']
            outputs.append(feats.view(videos, chunk.shape[0], *feats.shape[1:]))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)

    def _uses_channels_last(self) -> bool:
        """True after ``model.to(memory_format=torch.channels_last_3d)`` (the CUDA training layout)."""
        first_conv = next(p for p in self.backbone.parameters() if p.dim() == 5)
        return first_conv.is_contiguous(memory_format=torch.channels_last_3d)


#: Where files written before the projection head was called ``projection`` keep it (training
#: checkpoints, saved models, converted reference weights): ``head.fc1.weight`` and so on.
OLD_PROJECTION_PREFIX = "head."


def _load_old_projection_keys(module, state_dict, prefix, *_args) -> None:
    """Let ``load_state_dict`` read those files: their ``head.*`` keys are the ``projection.*`` ones."""
    old = prefix + OLD_PROJECTION_PREFIX
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[f"{prefix}projection.{key[len(old):]}"] = state_dict.pop(key)


def _check_pretrain_shapes(global_clips: torch.Tensor, local_clips: torch.Tensor) -> None:
    if global_clips.dim() != 6 or global_clips.shape[0] != 2:
        raise ValueError(f"global_clips must be [2, B, 3, T, H, W], got {tuple(global_clips.shape)}")
    if local_clips.dim() != 7 or local_clips.shape[0] != 2:
        raise ValueError(f"local_clips must be [2, K, B, 3, T, H, W], got {tuple(local_clips.shape)}")
    if global_clips.shape[1] != local_clips.shape[2] or global_clips.shape[2:] != local_clips.shape[3:]:
        raise ValueError(
            f"global clips {tuple(global_clips.shape)} and local clips {tuple(local_clips.shape)} "
            "must share batch size and clip shape"
        )


def _head_inputs(feats: torch.Tensor) -> torch.Tensor:
    """Head inputs in the reference's call order, one group each.

    Per global augmentation: its time-pooled feature, then each time-step; then every local clip
    (time-pooled). ``feats`` is ``[B, G, C, K]`` with G = 2 + 2K.
    """
    videos, _, channels, steps = feats.shape
    pooled = feats.mean(dim=-1)  # [B, G, C]
    global_steps = feats[:, :2].transpose(2, 3)  # [B, 2, K, C]
    global_part = torch.cat([pooled[:, :2, None], global_steps], dim=2).reshape(videos, 2 * (1 + steps), channels)
    return torch.cat([global_part, pooled[:, 2:]], dim=1)


def _split_embeddings(z: torch.Tensor, num_local: int) -> dict[str, torch.Tensor]:
    videos, _, dim = z.shape
    global_part = z[:, : 2 * (1 + num_local)].view(videos, 2, 1 + num_local, dim).transpose(0, 1)
    local_z = z[:, 2 * (1 + num_local) :].view(videos, 2, num_local, dim).transpose(0, 1)
    return {
        "global_z": global_part[:, :, 0],
        "global_steps_z": global_part[:, :, 1:],
        "local_z": local_z,
    }


__all__ = ["BN_MODES", "OLD_PROJECTION_PREFIX", "TCLRModel"]
