//! Shared layers: attention (scaled_dot_product_attention), MLP/SwiGLU, norms, layer scale, patch embed, position-embedding interpolation.
