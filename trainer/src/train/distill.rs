//! Knowledge distillation (Hinton et al. 2015, "Distilling the knowledge in a neural
//! network"): a trained teacher's predictions, softened by a temperature `T`, become a second
//! target for the student. The loss is `(1 − α) · data loss + α · T² · KL(teacher_T ‖
//! student_T)`, where `p_T = softmax(logits / T)`; the `T²` keeps the soft term's gradients on
//! the scale of the hard one's. Several teachers make an ensemble: their logits are averaged.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use model::{Model, Normalization};

use crate::eval::Tta;
use crate::io::read_checkpoint;

/// The network (or ensemble of networks) to distil from.
pub struct Teacher {
    /// The members, whose logits are averaged.
    members: Vec<Member>,
    /// α.
    weight: f64,
    /// T.
    temperature: f64,
    /// The views of each image whose logits each member averages.
    views: Tta,
}

/// One teacher network with what it takes to read the student's batches.
struct Member {
    /// The network, in inference mode, on the training device without autodiff.
    model: Model,
    /// Per channel, the student's normalised values times `scale` plus `shift` are the
    /// network's (`None` when both normalise alike).
    renormalise: Option<(Tensor<4>, Tensor<4>)>,
}

impl Member {
    /// Loads the checkpoint `path` (a file or a run folder's best) onto `device`; fails unless
    /// it predicts `classes`.
    fn load(
        path: &Path,
        device: &Device,
        student: Normalization,
        classes: &[String],
    ) -> Result<Self> {
        let checkpoint = read_checkpoint(path, device)
            .with_context(|| format!("--teacher {}", path.display()))?;
        ensure!(
            checkpoint.info.classes == classes,
            "--teacher {} classifies [{}] but the data has the classes [{}]",
            path.display(),
            checkpoint.info.classes.join(", "),
            classes.join(", ")
        );
        let theirs = checkpoint.info.normalization;
        let renormalise = (theirs != student).then(|| {
            let per_channel = |values: [f32; 3]| {
                Tensor::<4>::from_data(TensorData::new(values.to_vec(), [1, 3, 1, 1]), device)
            };
            let scale = [0, 1, 2].map(|c| student.std[c] / theirs.std[c]);
            let shift = [0, 1, 2].map(|c| (student.mean[c] - theirs.mean[c]) / theirs.std[c]);
            (per_channel(scale), per_channel(shift))
        });
        Ok(Self {
            model: checkpoint.model,
            renormalise,
        })
    }

    /// The network's logits for the student's `images` (without autodiff), averaged over
    /// `views`.
    fn logits(&self, images: Tensor<4>, views: Tta) -> Tensor<2> {
        let images = match &self.renormalise {
            Some((scale, shift)) => images * scale.clone() + shift.clone(),
            None => images,
        };
        views.logits(&self.model, images)
    }
}

impl Teacher {
    /// Loads the checkpoints `paths` (files or run folders' best; more than one makes an
    /// ensemble) onto `device` (the training device without autodiff); fails unless each
    /// predicts `classes`. Each answers with its logits averaged over `views` of each image.
    pub fn load(
        paths: &[PathBuf],
        device: &Device,
        student: Normalization,
        classes: &[String],
        weight: f64,
        temperature: f64,
        views: Tta,
    ) -> Result<Self> {
        ensure!(
            !paths.is_empty(),
            "distillation needs at least one --teacher"
        );
        let members = paths
            .iter()
            .map(|path| Member::load(path, device, student, classes))
            .collect::<Result<_>>()?;
        Ok(Self {
            members,
            weight,
            temperature,
            views,
        })
    }

    /// The teachers' names and parameter counts, views and loss weights, for the run's log.
    pub fn describe(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| {
                let model = &m.model;
                format!(
                    "{} ({} parameters)",
                    model.config().name,
                    model.parameter_count()
                )
            })
            .collect();
        format!(
            "{}, views {}, α = {}, T = {}",
            members.join(" + "),
            self.views,
            self.weight,
            self.temperature
        )
    }

    /// The teachers' logits for the student's `images`: each member's, averaged.
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let sum = self
            .members
            .iter()
            .map(|member| member.logits(images.clone(), self.views))
            .reduce(|a, b| a + b)
            .expect("a teacher has members");
        sum / self.members.len() as f64
    }

    /// `data_loss` blended with the distillation term for the student's `logits` on `images`
    /// (the student's batch, normalised the student's way).
    pub fn blend(&self, data_loss: Tensor<1>, logits: Tensor<2>, images: Tensor<4>) -> Tensor<1> {
        let teacher = self.logits(images.inner()).autodiff();
        data_loss * (1.0 - self.weight)
            + soft_cross_entropy(logits, teacher, self.temperature) * self.weight
    }
}

/// `T² · KL(softmax(teacher / T) ‖ softmax(student / T))`, averaged over the batch.
pub fn soft_cross_entropy(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let log_student = log_softmax(student / temperature, 1);
    let log_teacher = log_softmax(teacher.detach() / temperature, 1);
    let kl = (log_teacher.clone().exp() * (log_teacher - log_student)).sum_dim(1);
    kl.mean() * (temperature * temperature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(values: &[f32], device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len() / 3, 3]),
            device,
        )
    }

    /// A randomly initialised tiny-cnn that normalises as the student does.
    fn member(device: &Device) -> Member {
        Member {
            model: model::ModelConfig::from_name("tiny-cnn", &Default::default())
                .unwrap()
                .init(device)
                .unwrap(),
            renormalise: None,
        }
    }

    fn teacher(members: Vec<Member>, views: Tta) -> Teacher {
        Teacher {
            members,
            weight: 1.0,
            temperature: 4.0,
            views,
        }
    }

    /// Two deterministic images.
    fn images(device: &Device) -> Tensor<4> {
        let values: Vec<f32> = (0..2 * 3072)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        Tensor::<4>::from_data(TensorData::new(values, [2, 3, 32, 32]), device)
    }

    #[test]
    fn an_ensemble_answers_with_its_members_mean_logits() {
        let device = Device::flex();
        let (a, b) = (member(&device), member(&device));
        let images = images(&device);
        let alone = |m: &Member| m.logits(images.clone(), Tta::Mirror).into_data();
        let (a_alone, b_alone) = (alone(&a), alone(&b));
        let ensemble = teacher(vec![a, b], Tta::Mirror).logits(images);
        let got = ensemble.into_data().try_to_vec::<f32>().unwrap();
        let (a_alone, b_alone) = (
            a_alone.try_to_vec::<f32>().unwrap(),
            b_alone.try_to_vec::<f32>().unwrap(),
        );
        assert_ne!(a_alone, b_alone, "two random networks answer differently");
        for ((got, a), b) in got.iter().zip(&a_alone).zip(&b_alone) {
            assert!(
                (got - (a + b) / 2.0).abs() < 1e-5,
                "{got} vs mean of {a}, {b}"
            );
        }
    }

    #[test]
    fn a_mirror_averaged_teacher_answers_an_image_and_its_mirror_alike() {
        let device = Device::flex();
        let teacher = |views| teacher(vec![member(&device)], views);
        let autodiff = device.clone().autodiff();
        let images = images(&autodiff);
        let scores: Vec<f32> = (0..20).map(|i| (i % 7) as f32 / 3.0 - 1.0).collect();
        let student = Tensor::<2>::from_data(TensorData::new(scores, [2, 10]), &autodiff);
        let loss = |teacher: &Teacher, images: Tensor<4>| {
            let zero = Tensor::<1>::zeros([1], &autodiff);
            teacher
                .blend(zero, student.clone(), images)
                .into_scalar::<f32>()
        };
        let (mirror, single) = (teacher(Tta::Mirror), teacher(Tta::None));
        let flipped = images.clone().flip([3]);
        assert_eq!(
            loss(&mirror, images.clone()),
            loss(&mirror, flipped.clone())
        );
        assert_ne!(loss(&single, images), loss(&single, flipped));
    }

    #[test]
    fn the_soft_term_is_the_scaled_kl_divergence() {
        let device = Device::flex();
        let (s, t) = (
            [1.0f32, 2.0, 0.5, -1.0, 0.0, 1.0],
            [2.0f32, 0.0, 1.0, 0.5, 0.5, 0.5],
        );
        let temperature = 2.0;
        let got = soft_cross_entropy(logits(&s, &device), logits(&t, &device), temperature)
            .into_scalar::<f32>() as f64;
        let softmax = |z: &[f32]| -> Vec<f64> {
            let e: Vec<f64> = z.iter().map(|v| (*v as f64 / temperature).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.iter().map(|v| v / sum).collect()
        };
        let mut want = 0.0;
        for row in 0..2 {
            let (p, q) = (softmax(&t[row * 3..][..3]), softmax(&s[row * 3..][..3]));
            want += p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>();
        }
        want = want / 2.0 * temperature * temperature;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // A student that agrees with its teacher pays nothing.
        let same = soft_cross_entropy(logits(&t, &device), logits(&t, &device), temperature);
        assert!(same.into_scalar::<f32>().abs() < 1e-6);
    }
}
