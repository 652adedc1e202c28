//! The model card `trainer ship` writes beside each shipped model (`weights/<name>.md`), in
//! the Hugging Face style: YAML front matter (license, library, dataset, measured metrics),
//! then what the network is, how it was trained, what it measured, how to use it and where it
//! stops being useful.

use std::fmt::Write as _;

use model::manifest::ShippedModel;
use model::{CLASSES, CheckpointInfo, IMAGE_SIZE};

use crate::eval::Evaluation;

/// The card's Markdown for `entry`, with the per-class results of `test` and the input
/// statistics of `info`.
pub fn model_card(entry: &ShippedModel, info: &CheckpointInfo, test: &Evaluation) -> String {
    let accuracy = entry.test_accuracy;
    let mut card = format!(
        "---\n\
         license: {license}\n\
         library_name: burn\n\
         pipeline_tag: image-classification\n\
         tags:\n- image-classification\n- cifar10\n- burn\n- cifar-burn\n\
         datasets:\n- cifar10\n\
         metrics:\n- accuracy\n\
         model-index:\n\
         - name: {name}\n  \
           results:\n  \
           - task:\n      type: image-classification\n    \
             dataset:\n      name: CIFAR-10 (JPEG rebuild)\n      type: cifar10\n      split: test\n    \
             metrics:\n    \
             - type: accuracy\n      value: {accuracy:.4}\n    \
             - type: top-5-accuracy\n      value: {top5:.4}\n\
         ---\n\n",
        license = env!("CARGO_PKG_LICENSE"),
        name = entry.name,
        top5 = entry.top5_accuracy,
    );
    let _ = write!(
        card,
        "# {name}\n\n\
         A CIFAR-10 classifier made with [cifar-burn](../README.md) (Rust, Burn 0.22): the `{arch}` \
         network, {params} parameters, {mb:.2} MB ({gz:.2} MB gzip).\n\n\
         ## Measured\n\n\
         Test accuracy **{acc:.2} %** (top-5 {top5:.2} %) on {n} test images, measured by `trainer \
         ship` when the file was shipped.{half} Per class:\n\n\
         | class | accuracy | images |\n|---|---|---|\n",
        name = entry.name,
        arch = entry.config.name,
        params = entry.parameters,
        mb = entry.bytes as f64 / 1e6,
        gz = entry.gzip_bytes as f64 / 1e6,
        acc = 100.0 * accuracy,
        top5 = 100.0 * entry.top5_accuracy,
        n = entry.test_images,
        half = entry.f32_test_accuracy.map_or(String::new(), |full| format!(
            " The file stores the convolution and linear weights in f16 (half the bytes; batch norm \
             in f32) and is read back as f32; the f32 weights it was made from scored {:.2} %.",
            100.0 * full
        )),
    );
    for (class, (correct, total)) in info.classes.iter().zip(test.per_class()) {
        let share = 100.0 * correct as f64 / total.max(1) as f64;
        let _ = writeln!(card, "| {class} | {share:.1} % | {total} |");
    }
    let n = &info.normalization;
    let _ = write!(
        card,
        "\n## Training\n\n{trained}\n\n\
         ## Architecture\n\n```json\n{config}\n```\n\n\
         ## Input\n\n\
         RGB images of {IMAGE_SIZE} × {IMAGE_SIZE} pixels, channel-major, scaled to 0–1 and \
         normalised per channel with mean ({m0:.4}, {m1:.4}, {m2:.4}) and standard deviation \
         ({s0:.4}, {s1:.4}, {s2:.4}), the statistics of its training images (also in the file's \
         metadata). Larger photos are seen as their centre square, resized.\n\n\
         ## Use\n\n\
         - `trainer predict --checkpoint {file} photo.jpg` (top 5), `trainer gradcam …` (heat maps)\n\
         - the web page (WebGPU or WebAssembly), which lists it from `manifest.json`\n\
         - PyTorch: `trainer export --checkpoint {file}`, then `torch_models.load_exported(…)`\n\n\
         File `{file}`, SHA-256 `{sha}`.\n\n\
         ## Intended use and limits\n\n\
         - It knows {count} classes only ({classes}); anything else is still given one of \
         them, often with confidence.\n\
         - It sees {IMAGE_SIZE} × {IMAGE_SIZE} pixels: small, centred, single objects work best.\n\
         - {data}\n\
         - A teaching and demonstration model, not for decisions about people or safety.\n",
        trained = entry.trained,
        config = serde_json::to_string_pretty(&entry.config).unwrap_or_default(),
        m0 = n.mean[0],
        m1 = n.mean[1],
        m2 = n.mean[2],
        s0 = n.std[0],
        s1 = n.std[1],
        s2 = n.std[2],
        file = entry.file,
        sha = entry.sha256,
        data = if info.classes.iter().map(String::as_str).eq(CLASSES) {
            "Trained and measured on the CIFAR-10 JPEG rebuild used by this project (pixels \
             JPEG-decoded, PSNR about 30 dB against the originals): expect accuracy a few points \
             different on the official data."
        } else {
            "Trained and measured on the image folder named in its training command: its \
             accuracy says how it does on that folder's test images, nothing more."
        },
        count = info.classes.len(),
        classes = info.classes.join(", "),
    );
    card
}
