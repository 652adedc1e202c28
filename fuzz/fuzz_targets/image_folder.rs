//! The image-folder reader (`DIR/{train,test,val}/<class>/*`): any files, named anything and
//! holding any bytes, give cached binary batches whose counts match what the reader reported
//! (and a second read from the cache gives the same), or an error.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use model::CLASSES;
use trainer::data::CifarSet;
use trainer::data::folder::cached_batches;

/// One file: where it goes and what it holds.
#[derive(Arbitrary, Debug)]
struct File {
    split: u8,
    class: u8,
    name: String,
    bytes: Vec<u8>,
}

/// A folder: its files, whether it has `val/`, and `--strict`.
#[derive(Arbitrary, Debug)]
struct Folder {
    files: Vec<File>,
    val: bool,
    strict: bool,
}

fuzz_target!(|folder: Folder| {
    let root = tempfile::tempdir().expect("a temporary folder");
    let dir = root.path();
    let splits: &[&str] = if folder.val {
        &["train", "test", "val"]
    } else {
        &["train", "test"]
    };
    for split in splits {
        for class in CLASSES {
            std::fs::create_dir_all(dir.join(split).join(class)).unwrap();
        }
    }
    for file in &folder.files {
        let split = splits[file.split as usize % splits.len()];
        let class = CLASSES[file.class as usize % CLASSES.len()];
        // File names from the input, within what a file system takes.
        let name: String = file
            .name
            .chars()
            .filter(|c| !matches!(c, '/' | '\0'))
            .take(40)
            .collect();
        if name.is_empty() || name == "." || name == ".." {
            continue;
        }
        let _ = std::fs::write(dir.join(split).join(class).join(name), &file.bytes);
    }
    let Ok((cache, info)) = cached_batches(dir, folder.strict) else {
        return;
    };
    let train = CifarSet::train(&cache).expect("the cached training batches read");
    let test = CifarSet::test(&cache).expect("the cached test batch reads");
    assert_eq!(train.len(), info.counts["train"].iter().sum::<usize>());
    assert_eq!(test.len(), info.counts["test"].iter().sum::<usize>());
    if folder.strict {
        assert!(info.bad.is_empty());
    }
    let (_, again) = cached_batches(dir, folder.strict).expect("the cache reads again");
    assert_eq!(again.counts, info.counts);
});
