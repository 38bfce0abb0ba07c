//! timm-style ViT: MAE trunks and the DeiT-B/16 of the attention head.
