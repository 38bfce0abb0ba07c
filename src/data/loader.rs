//! Batches for the model: decode (or read the resize cache), augment, normalise and stack on
//! worker threads while the model computes, delivering batches in order.
//!
//! Like torch's DataLoader, each worker builds whole batches and at most
//! `prefetch_factor * num_workers` batches are in flight; `num_workers = 0` builds them on the
//! caller's thread. Shuffling is a function of (seed, epoch) and each image's augmentation of
//! (seed, epoch, item position), so the batches do not depend on the number of workers. With an
//! augment cycle of n (`training_params.feature_cache_views`) epoch e draws the augmentations
//! of epoch `(e - 1) % n + 1`, in its own order.

use super::cache::{CacheConfig, ResizeCache};
use super::image;
use super::rng::Rng;
use super::transforms::{FloatImage, Pipeline};
use super::{Batch, DatasetInfo, Item, Label, Task};
use crate::config::{LoaderParams, Transforms};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use tch::{Device, Tensor};

const SHUFFLE_STREAM: u64 = 0x5348_5546; // "SHUF"
/// The stream of per-image augmentation randomness (`medfm predict` draws the same).
pub(crate) const AUGMENT_STREAM: u64 = 0x4155_4745; // "AUGE"

/// What every worker needs, shared.
pub(super) struct Source {
    pub pipeline: Pipeline,
    pub cache: Option<ResizeCache>,
    pub channels: usize,
    pub task: Task,
    pub n_classes: usize,
    pub seed: u64,
}

impl Source {
    /// The pipeline for `transforms`, with the resize cache `cache` when the pipeline has a
    /// leading Resize to cache; room for the entries of `items` is reserved in it
    /// ([`ResizeCache::reserve`]).
    pub fn new(
        transforms: &Transforms,
        info: &DatasetInfo,
        seed: u64,
        cache: Option<&CacheConfig>,
        items: &[Item],
    ) -> Result<Source> {
        let pipeline = Pipeline::new(transforms, info)?;
        let cache = match (cache, pipeline.resize) {
            (Some(config), Some(size)) => {
                let mut cache = ResizeCache::open(&config.dir)?;
                cache.reserve(
                    items.iter().map(|i| i.path.as_path()),
                    size,
                    info.channels as usize,
                    config.max_bytes,
                );
                Some(cache)
            }
            _ => None,
        };
        Ok(Source {
            pipeline,
            cache,
            channels: info.channels as usize,
            task: info.task,
            n_classes: info.n_classes() as usize,
            seed,
        })
    }

    /// The image after the leading Resize: from the cache, or decoded (and cached); the
    /// error names the file and where it was listed.
    pub fn base_image(&self, item: &Item) -> Result<image::Image> {
        self.resized(item)
            .with_context(|| format!("image {} ({})", item.path.display(), item.origin))
    }

    /// Whether `item` can be read: a valid resize-cache entry says so without decoding (it was
    /// made from the unchanged file); otherwise decode it (filling the cache).
    pub fn check(&self, item: &Item) -> Result<()> {
        if let (Some(cache), Some(size)) = (&self.cache, self.pipeline.resize) {
            if cache.contains(&item.path, size, self.channels) {
                return Ok(());
            }
        }
        self.resized(item).map(drop)
    }

    /// `base_image` without naming the item in the error.
    pub fn resized(&self, item: &Item) -> Result<image::Image> {
        let decode = || -> Result<image::Image> {
            let img = image::load(&item.path, self.channels)?;
            Ok(self.pipeline.resize(img))
        };
        match (&self.cache, self.pipeline.resize) {
            (Some(cache), Some(size)) => {
                cache.get_or_insert(&item.path, size, self.channels, decode)
            }
            _ => decode(),
        }
    }

    fn views(&self, item: &Item, index: usize, epoch: u64) -> Result<Vec<FloatImage>> {
        let base = self.base_image(item)?;
        let mut rng = Rng::seeded(&[self.seed, AUGMENT_STREAM, epoch, index as u64]);
        self.pipeline
            .apply(base, &mut rng)
            .with_context(|| format!("transforming {} ({})", item.path.display(), item.origin))
    }

    fn batch(&self, items: &[Item], indices: &[usize], epoch: u64) -> Result<Batch> {
        let mut per_item = Vec::with_capacity(indices.len());
        for &i in indices {
            per_item.push(self.views(&items[i], i, epoch)?);
        }
        let n_views = per_item.first().map_or(0, |v| v.len());
        let mut views = Vec::with_capacity(n_views);
        for v in 0..n_views {
            let first = &per_item[0][v];
            let (c, h, w) = (first.channels, first.height, first.width);
            let mut images = Vec::with_capacity(per_item.len());
            for (k, item_views) in per_item.iter().enumerate() {
                let img = &item_views[v];
                if (img.channels, img.height, img.width) != (c, h, w) {
                    let item = &items[indices[k]];
                    bail!(
                        "images of one batch differ in size: {} ({}) is {}x{}, {} is {}x{}; add \
                         Resize or CenterCrop to the transforms so all images have one size",
                        item.path.display(),
                        item.origin,
                        img.height,
                        img.width,
                        items[indices[0]].path.display(),
                        h,
                        w
                    );
                }
                images.push(img);
            }
            views.push(stack(&images, (c, h, w)));
        }
        let labels = match self.task {
            Task::Multiclass => {
                let v: Vec<i64> = indices
                    .iter()
                    .map(|&i| match &items[i].label {
                        Label::Class(c) => *c,
                        Label::Multi(_) => -1,
                    })
                    .collect();
                Tensor::from_slice(&v)
            }
            Task::Multilabel => {
                let mut v = Vec::with_capacity(indices.len() * self.n_classes);
                for &i in indices {
                    match &items[i].label {
                        Label::Multi(m) => v.extend_from_slice(m),
                        Label::Class(c) => {
                            v.extend((0..self.n_classes).map(|k| (k as i64 == *c) as i32 as f32))
                        }
                    }
                }
                Tensor::from_slice(&v).view([indices.len() as i64, self.n_classes as i64])
            }
        };
        let images = views
            .first()
            .map(|t| t.shallow_clone())
            .unwrap_or_else(|| Tensor::zeros([0], tch::kind::FLOAT_CPU));
        let views = if n_views > 1 { views } else { Vec::new() };
        Ok(Batch {
            images,
            labels,
            indices: indices.to_vec(),
            views,
        })
    }
}

pub struct Loader {
    items: Arc<Vec<Item>>,
    source: Arc<Source>,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    workers: usize,
    prefetch: usize,
    /// The CUDA device batches are pinned for (`pin_memory`), if any.
    pin: Option<Device>,
    /// `balanced_sampler`: the cumulative sampling weights of the items (inverse class
    /// frequency); each epoch draws `len` items with replacement.
    sampler: Option<Vec<f64>>,
    /// `feature_cache_views` n: epoch e draws the augmentations of epoch `(e - 1) % n + 1`.
    augment_cycle: Option<u64>,
}

/// The random stream of the balanced sampler's draws.
const SAMPLER_STREAM: u64 = 0x5A4D_504C;

/// Cumulative weights 1 / (images of the item's class) over `items` (single-label data).
pub fn balanced_weights(items: &[Item], info: &DatasetInfo) -> Result<Vec<f64>> {
    if info.task == Task::Multilabel {
        bail!(
            "dataloader_params.trainloader.balanced_sampler applies to single-label data; for \
             multi-label data use training_params.class_weights (pos_weight per label)"
        );
    }
    let mut count = vec![0usize; info.label_names.len()];
    let class = |it: &Item| match it.label {
        Label::Class(c) => c as usize,
        Label::Multi(_) => 0,
    };
    for it in items {
        if let Some(k) = count.get_mut(class(it)) {
            *k += 1;
        }
    }
    let mut acc = 0.0;
    Ok(items
        .iter()
        .map(|it| {
            acc += 1.0 / count.get(class(it)).copied().unwrap_or(1).max(1) as f64;
            acc
        })
        .collect())
}

/// Batches an epoch of `n` items gives (`drop_last`: the partial last batch is dropped).
pub fn batches_per_epoch(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        n / batch_size
    } else {
        n.div_ceil(batch_size)
    }
}

impl Loader {
    /// `cache`: where the resize cache lives and how much it may grow (None: no cache).
    pub fn new(
        items: Vec<Item>,
        transforms: &Transforms,
        loader: &LoaderParams,
        info: &DatasetInfo,
        seed: u64,
        cache: Option<CacheConfig>,
    ) -> Result<Loader> {
        if loader.batch_size < 1 {
            bail!("batch_size must be >= 1, got {}", loader.batch_size);
        }
        let source = Source::new(transforms, info, seed, cache.as_ref(), &items)?;
        let sampler = if loader.balanced_sampler {
            Some(balanced_weights(&items, info)?)
        } else {
            None
        };
        Ok(Loader {
            sampler,
            items: Arc::new(items),
            source: Arc::new(source),
            batch_size: loader.batch_size as usize,
            shuffle: loader.shuffle,
            drop_last: loader.drop_last,
            workers: loader.num_workers.max(0) as usize,
            prefetch: loader.prefetch_factor.unwrap_or(2).max(1) as usize,
            pin: None,
            augment_cycle: None,
        })
    }

    /// `training_params.feature_cache_views`: the augmentations repeat every `n` epochs
    /// (the shuffle order does not), so that a cache of `n` views serves every epoch.
    pub fn with_augment_cycle(mut self, n: Option<u64>) -> Loader {
        self.augment_cycle = n.filter(|&n| n > 0);
        self
    }

    /// The epoch whose augmentations `epoch` draws: itself, or with an augment cycle of n,
    /// the epoch among the first n that it repeats (epochs count from 1).
    pub fn augment_epoch(&self, epoch: u64) -> u64 {
        match self.augment_cycle {
            Some(n) if epoch > 0 => (epoch - 1) % n + 1,
            _ => epoch,
        }
    }

    /// `pin_memory`: batches are built in pinned memory for `device` (when it is a CUDA
    /// device), so the trainer's uploads run asynchronously. Pinning happens in the worker
    /// threads, off the training loop.
    pub fn pinned_for(mut self, device: Option<Device>) -> Loader {
        self.pin = device.filter(|d| d.is_cuda());
        self
    }

    /// Batches per epoch (honouring drop_last).
    pub fn len(&self) -> usize {
        batches_per_epoch(self.items.len(), self.batch_size, self.drop_last)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items, in the order given to `new`.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// True when the transforms have no randomness (so trunk features of a frozen trunk can
    /// be cached across epochs).
    pub fn is_deterministic(&self) -> bool {
        self.source.pipeline.is_deterministic()
    }

    /// The resize cache's (hits, misses) so far, when there is one.
    pub fn cache_stats(&self) -> Option<(u64, u64)> {
        self.source.cache.as_ref().map(|c| c.stats())
    }

    /// The item positions of each batch of `epoch`.
    pub fn batch_indices(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        if let Some(cumulative) = &self.sampler {
            // torch's WeightedRandomSampler(weights, len, replacement=True): independent
            // draws, each item with probability weight / sum (a shuffle is implied).
            let mut rng = Rng::seeded(&[self.source.seed, SAMPLER_STREAM, epoch]);
            let total = cumulative.last().copied().unwrap_or(0.0);
            for slot in order.iter_mut() {
                let u = rng.unit() * total;
                *slot = cumulative
                    .partition_point(|&c| c <= u)
                    .min(cumulative.len() - 1);
            }
        } else if self.shuffle {
            Rng::seeded(&[self.source.seed, SHUFFLE_STREAM, epoch]).shuffle(&mut order);
        }
        let mut batches: Vec<Vec<usize>> =
            order.chunks(self.batch_size).map(|c| c.to_vec()).collect();
        if self.drop_last && batches.last().is_some_and(|b| b.len() < self.batch_size) {
            batches.pop();
        }
        batches
    }

    /// The batches of `epoch` (shuffle order and augmentations are a function of the seed and
    /// the epoch, so a resumed run sees the same data).
    pub fn epoch(&self, epoch: u64) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        self.load(self.batch_indices(epoch), epoch)
    }

    /// The batches `plan` lists (item positions), in that order, with the augmentations of
    /// `epoch` (see [`Loader::augment_epoch`]): what `epoch` gives for a plan of its batches.
    pub fn load(
        &self,
        batches: Vec<Vec<usize>>,
        epoch: u64,
    ) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let epoch = self.augment_epoch(epoch);
        if self.workers == 0 {
            let (items, source, pin) = (self.items.clone(), self.source.clone(), self.pin);
            return Box::new(
                batches
                    .into_iter()
                    .map(move |b| source.batch(&items, &b, epoch).map(|b| b.pinned(pin))),
            );
        }
        Box::new(Prefetch::start(
            self.items.clone(),
            self.source.clone(),
            batches,
            epoch,
            (self.workers, self.prefetch * self.workers),
            self.pin,
        ))
    }
}

/// Worker threads building batches ahead of the consumer, delivered in order.
struct Prefetch {
    batches: usize,
    next: usize,
    pending: BTreeMap<usize, Result<Batch>>,
    rx: mpsc::Receiver<(usize, Result<Batch>)>,
    gate: Arc<(Mutex<Gate>, Condvar)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

struct Gate {
    /// Next batch a worker may claim.
    claim: usize,
    /// Batches handed to the consumer.
    delivered: usize,
    window: usize,
    stop: bool,
}

impl Prefetch {
    fn start(
        items: Arc<Vec<Item>>,
        source: Arc<Source>,
        batches: Vec<Vec<usize>>,
        epoch: u64,
        (workers, window): (usize, usize),
        pin: Option<Device>,
    ) -> Prefetch {
        let n = batches.len();
        let batches = Arc::new(batches);
        let gate = Arc::new((
            Mutex::new(Gate {
                claim: 0,
                delivered: 0,
                window: window.max(1),
                stop: false,
            }),
            Condvar::new(),
        ));
        let (tx, rx) = mpsc::channel();
        let threads = (0..workers.min(n.max(1)))
            .map(|_| {
                let (items, source, batches, gate, tx) = (
                    items.clone(),
                    source.clone(),
                    batches.clone(),
                    gate.clone(),
                    tx.clone(),
                );
                std::thread::spawn(move || loop {
                    let k = {
                        let (lock, cv) = &*gate;
                        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
                        while !g.stop
                            && g.claim < batches.len()
                            && g.claim >= g.delivered + g.window
                        {
                            g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
                        }
                        if g.stop || g.claim >= batches.len() {
                            return;
                        }
                        g.claim += 1;
                        g.claim - 1
                    };
                    let result = source
                        .batch(&items, &batches[k], epoch)
                        .map(|b| b.pinned(pin));
                    if tx.send((k, result)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        Prefetch {
            batches: n,
            next: 0,
            pending: BTreeMap::new(),
            rx,
            gate,
            threads,
        }
    }
}

impl Iterator for Prefetch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.batches {
            return None;
        }
        let result = loop {
            if let Some(r) = self.pending.remove(&self.next) {
                break r;
            }
            match self.rx.recv() {
                Ok((k, r)) => {
                    self.pending.insert(k, r);
                }
                Err(_) => {
                    break Err(anyhow::anyhow!(
                        "the data loader's worker threads stopped unexpectedly"
                    ))
                }
            }
        };
        self.next += 1;
        let (lock, cv) = &*self.gate;
        lock.lock().unwrap_or_else(|e| e.into_inner()).delivered = self.next;
        cv.notify_all();
        Some(result)
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        let (lock, cv) = &*self.gate;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Same-sized CHW images as one `[n, c, h, w]` tensor, written in place: tch's `from_slice`
/// zeroes a new tensor and copies a staging buffer into it, two more passes over each batch.
fn stack(images: &[&FloatImage], (c, h, w): (usize, usize, usize)) -> Tensor {
    let per = c * h * w;
    let t = Tensor::empty(
        [images.len() as i64, c as i64, h as i64, w as i64],
        tch::kind::FLOAT_CPU,
    );
    if per == 0 || images.is_empty() {
        return t;
    }
    // SAFETY: `t` is a new contiguous f32 CPU tensor of `images.len() * per` elements that
    // nothing else refers to yet.
    let dst =
        unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, images.len() * per) };
    for (d, img) in dst.chunks_exact_mut(per).zip(images) {
        d.copy_from_slice(&img.data);
    }
    t
}
