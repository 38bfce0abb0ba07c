//! CoCa trunks `coca_ViT-B-32`, `coca_ViT-L-14` (open_clip, `laion2b_s13b_b90k`): the open_clip
//! vision tower (`clip.rs`) followed by the attentional pooler, as open_clip's original CoCa
//! setup runs it: `x = attn_pool(tower(x))`, `x = ln_post(x)`, pooled = `x[:, 0] @ proj`.
//!
//! The pooler: 256 learned queries of width E (the embedding, 512 / 768), `ln_q` on the queries,
//! `ln_k` on the tower's tokens (width W), torch `nn.MultiheadAttention(E, 8, kdim=W, vdim=W)`,
//! whose key width differs from its query width, hence separate `q_proj_weight` [E, E],
//! `k_proj_weight` / `v_proj_weight` [E, W] and one packed `in_proj_bias` [3E].
//!
//! Features (the reference's `cat((x_cls.unsqueeze(1), x_emb), 1)`): pooled = output 0 after
//! `ln_post`, `@ proj`; tokens = `[pooled ; outputs 1..255 after ln_post]` (256 tokens of E).

use super::clip::{TowerConfig, VisionTower};
use super::layers::{self, merge_heads, split_heads, Fill, LayerNorm, Linear, LinearInit};
use super::probe::{Probe, Readout};
use super::registry::BuildOptions;
use super::InputRule;
use super::{Backbone, Features};
use anyhow::Result;
use tch::{nn, Tensor};

const EPS: f64 = 1e-5;

/// Shape of a CoCa vision trunk.
#[derive(Debug, Clone, Copy)]
pub struct CocaConfig {
    pub tower: TowerConfig,
    pub n_queries: i64,
    pub pool_heads: i64,
}

impl CocaConfig {
    /// `coca_ViT-B-32`.
    pub const fn vit_b32() -> CocaConfig {
        CocaConfig {
            tower: TowerConfig {
                patch: 32,
                width: 768,
                layers: 12,
                heads: 12,
                output_dim: 512,
            },
            n_queries: 256,
            pool_heads: 8,
        }
    }

    /// `coca_ViT-L-14`.
    pub const fn vit_l14() -> CocaConfig {
        CocaConfig {
            tower: TowerConfig {
                patch: 14,
                width: 1024,
                layers: 24,
                heads: 16,
                output_dim: 768,
            },
            n_queries: 256,
            pool_heads: 8,
        }
    }

    /// Tokens of the features: one per pooler query (the first is the pooled embedding), at
    /// any input size.
    pub fn tokens(&self) -> i64 {
        self.n_queries
    }
}

/// Learned queries cross-attending to the tower's tokens.
struct AttentionalPooler {
    query: Tensor,
    q_proj_weight: Tensor,
    k_proj_weight: Tensor,
    v_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: Linear,
    ln_q: LayerNorm,
    ln_k: LayerNorm,
    heads: i64,
}

impl AttentionalPooler {
    fn new(
        p: &nn::Path,
        embed: i64,
        context: i64,
        n_queries: i64,
        heads: i64,
    ) -> AttentionalPooler {
        let a = p / "attn";
        // torch's MultiheadAttention init: xavier-uniform projections, zero biases.
        let xavier =
            |fan_in: i64, fan_out: i64| Fill::Uniform((6.0 / (fan_in + fan_out) as f64).sqrt());
        let out_proj = Linear::new(
            &(&a / "out_proj"),
            embed,
            embed,
            true,
            LinearInit::TorchZeroBias,
        );
        AttentionalPooler {
            query: layers::param(p, "query", &[n_queries, embed], Fill::Normal(1.0)),
            q_proj_weight: layers::param(
                &a,
                "q_proj_weight",
                &[embed, embed],
                xavier(embed, embed),
            ),
            k_proj_weight: layers::param(
                &a,
                "k_proj_weight",
                &[embed, context],
                xavier(context, embed),
            ),
            v_proj_weight: layers::param(
                &a,
                "v_proj_weight",
                &[embed, context],
                xavier(context, embed),
            ),
            in_proj_bias: layers::param(&a, "in_proj_bias", &[3 * embed], Fill::Zeros),
            out_proj,
            ln_q: LayerNorm::new(&(p / "ln_q"), embed, EPS),
            ln_k: LayerNorm::new(&(p / "ln_k"), context, EPS),
            heads,
        }
    }

    /// [B, L, W] -> [B, n_queries, E].
    fn forward(&self, x: &Tensor) -> Tensor {
        let b = x.size()[0];
        let x = self.ln_k.forward(x);
        let bias = self.in_proj_bias.chunk(3, 0);
        let q = self
            .ln_q
            .forward(&self.query)
            .linear(&self.q_proj_weight, Some(&bias[0]));
        let q = q.unsqueeze(0).expand([b, -1, -1], true);
        let k = x.linear(&self.k_proj_weight, Some(&bias[1]));
        let v = x.linear(&self.v_proj_weight, Some(&bias[2]));
        let out = Tensor::scaled_dot_product_attention(
            &split_heads(&q, self.heads),
            &split_heads(&k, self.heads),
            &split_heads(&v, self.heads),
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        self.out_proj.forward(&merge_heads(&out))
    }
}

pub struct Coca {
    tower: VisionTower,
    attn_pool: AttentionalPooler,
    ln_post: LayerNorm,
    proj: Tensor,
}

impl Coca {
    pub fn new(p: &nn::Path, cfg: CocaConfig, opts: &BuildOptions) -> Result<Coca> {
        let tower = VisionTower::new(p, cfg.tower, opts, "CoCa")?;
        let (e, w) = (cfg.tower.output_dim, cfg.tower.width);
        Ok(Coca {
            tower,
            attn_pool: AttentionalPooler::new(
                &(p / "attn_pool"),
                e,
                w,
                cfg.n_queries,
                cfg.pool_heads,
            ),
            ln_post: LayerNorm::new(&(p / "ln_post"), e, EPS),
            proj: layers::param(p, "proj", &[e, e], Fill::Normal((w as f64).powf(-0.5))),
        })
    }
}

impl Backbone for Coca {
    fn forward(&self, x: &Tensor, train: bool) -> Features {
        self.forward_from_block(&self.forward_to_block(x, 0), 0, train)
    }

    fn splits_at_blocks(&self) -> bool {
        true
    }

    fn forward_to_block(&self, x: &Tensor, k: usize) -> Tensor {
        self.tower.forward_to(x, k)
    }

    /// The tower's blocks k.., then the attentional pooler and `ln_post` (frozen or not, they
    /// come after the cut).
    fn forward_from_block(&self, h: &Tensor, k: usize, train: bool) -> Features {
        let y = self.ln_post.forward(
            &self
                .attn_pool
                .forward(&self.tower.forward_from(h, k, train)),
        );
        let pooled = y.select(1, 0).matmul(&self.proj);
        let n = y.size()[1] - 1;
        let tokens = Tensor::cat(&[pooled.unsqueeze(1), y.narrow(1, 1, n)], 1);
        Features { pooled, tokens }
    }

    /// The tower's residual blocks (the reference defines no block list for CoCa).
    fn blocks(&self) -> Vec<String> {
        self.tower.block_names()
    }

    /// DINOv2's linear-evaluation features (`Backbone::last_blocks`) with CoCa's readout: each
    /// of the last `n` blocks' output through the attentional pooler and `ln_post`, the pooled
    /// embedding as `forward` makes it and the mean of the pooler's other outputs (the tokens
    /// `forward` hands the heads).
    fn last_blocks(&self, x: &Tensor, n: usize) -> Option<Vec<(Tensor, Tensor)>> {
        let outs = self.tower.last_block_outputs(x, n)?;
        Some(
            outs.iter()
                .map(|h| {
                    let y = self.ln_post.forward(&self.attn_pool.forward(h));
                    let p = y.size()[1] - 1;
                    (
                        y.select(1, 0).matmul(&self.proj),
                        y.narrow(1, 1, p).mean_dim(1, false, tch::Kind::Float),
                    )
                })
                .collect(),
        )
    }

    fn set_drop_path(&mut self, rate: f64) {
        self.tower.set_drop_path(rate);
    }

    fn probe_points(&self) -> Vec<String> {
        self.tower.probe_points()
    }

    /// `forward`'s ops with the tower's taps; the attentional pooler reads every token, so
    /// rollout reads the mean of all rows.
    fn forward_probed(&self, x: &Tensor, probe: &mut Probe) -> Option<Features> {
        let t = self.tower.forward_probed(x, probe, Readout::MeanFrom(0));
        let y = self.ln_post.forward(&self.attn_pool.forward(&t));
        let pooled = y.select(1, 0).matmul(&self.proj);
        let n = y.size()[1] - 1;
        let tokens = Tensor::cat(&[pooled.unsqueeze(1), y.narrow(1, 1, n)], 1);
        Some(Features { pooled, tokens })
    }

    fn input_rule(&self) -> InputRule {
        self.tower.input_rule()
    }
}

/// The CoCa trunk of `cfg` (registry dispatch; loaded by `clip::load`).
pub fn build(p: &nn::Path, cfg: &CocaConfig, opts: &BuildOptions) -> Result<Box<dyn Backbone>> {
    Ok(Box::new(Coca::new(p, *cfg, opts)?))
}
