//! Loading a checkpoint: hostile SafeTensors headers, cifar-burn metadata describing any
//! network, tensors of the wrong shape or dtype. Each either loads into a network that runs, or
//! gives an error.
#![no_main]

use burn::tensor::{Device, Tensor};
use libfuzzer_sys::fuzz_target;
use model::Checkpoint;

fuzz_target!(|bytes: &[u8]| {
    if Checkpoint::read_header(bytes).is_err() {
        return;
    }
    let device = Device::flex();
    if let Ok(checkpoint) = Checkpoint::from_bytes(bytes, &device) {
        let input = Tensor::<4>::zeros([1, 3, 32, 32], &device);
        let logits = checkpoint.model.forward(input);
        assert_eq!(logits.dims()[0], 1);
    }
});
