//! Loaders: IDX (MNIST) gzipped and raw, CSV series and windows, text corpora.
//! Every malformed input must come back as a typed error, never a panic.

use recurrent::data::{Inputs, Targets};
use recurrent::io::csv::{self, Column, Missing, Scaler, Scaling};
use recurrent::io::idx::{self, Split};
use recurrent::io::text::{self, Encoding, Vocab};
use recurrent::rng::Rng;
use recurrent::Error;
use std::path::PathBuf;

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k");

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("recurrent-loaders-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn data_reason(e: Error) -> String {
    match e {
        Error::Data { reason, .. } => reason,
        other => panic!("expected Error::Data, got {other:?}"),
    }
}

fn gunzip(path: &str) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn idx_round_trips_raw_and_gzipped_whatever_the_file_name() {
    let mut rng = Rng::new(3);
    let dims = vec![5, 3, 4];
    let data: Vec<u8> = (0..60).map(|_| rng.below(256) as u8).collect();
    let raw = tmp("a-idx3-ubyte");
    let gz = tmp("b-idx3-ubyte.gz");
    let gz_no_ext = tmp("c-idx3-ubyte");
    idx::write(&raw, &dims, &data, false).unwrap();
    idx::write(&gz, &dims, &data, true).unwrap();
    idx::write(&gz_no_ext, &dims, &data, true).unwrap();
    assert_eq!(
        &std::fs::read(&gz).unwrap()[..2],
        &[0x1f, 0x8b],
        "gzip written"
    );
    assert_eq!(
        std::fs::read(&raw).unwrap()[..4],
        [0, 0, 8, 3],
        "IDX magic written"
    );
    for p in [&raw, &gz, &gz_no_ext] {
        let a = idx::read(p).unwrap();
        assert_eq!(a.dims, dims);
        assert_eq!(a.data, data);
    }
}

#[test]
fn bundled_mnist_loads_with_expected_shapes_scaling_and_labels() {
    let train = idx::load_mnist_dir(MNIST, Split::Train).unwrap();
    let test = idx::load_mnist_dir(MNIST, Split::Test).unwrap();
    assert_eq!(train.x.shape(), vec![7996, 28, 28]);
    assert_eq!(test.x.shape(), vec![2004, 28, 28]);
    let Inputs::Features { data, .. } = &test.x else {
        panic!("features")
    };
    assert!(data.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(data.contains(&1.0), "255 maps to exactly 1");
    let Some(Targets::Classes { data: y, shape }) = &train.y else {
        panic!("classes")
    };
    assert_eq!(shape, &vec![7996]);
    let mut counts = [0usize; 10];
    y.iter().for_each(|&c| counts[c as usize] += 1);
    assert!(
        counts.iter().all(|&c| c > 600),
        "every digit present about 800 times: {counts:?}"
    );
    // Pixel values are the raw bytes / 255.
    let raw = gunzip(&format!("{MNIST}/t10k-images-idx3-ubyte.gz"));
    assert_eq!(
        data[100 * 784 + 400],
        raw[16 + 100 * 784 + 400] as f32 / 255.0
    );
}

#[test]
fn mnist_folder_of_uncompressed_files_loads_the_same() {
    // A user's download unpacked with gunzip: same names without `.gz`.
    let dir = tmp("unpacked-mnist");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::write(dir.join(f), gunzip(&format!("{MNIST}/{f}.gz"))).unwrap();
    }
    let a = idx::load_mnist_dir(&dir, Split::Test).unwrap();
    let b = idx::load_mnist_dir(MNIST, Split::Test).unwrap();
    assert_eq!(a, b);
    let e = idx::load_mnist_dir(&dir, Split::Train).unwrap_err();
    assert!(
        data_reason(e).contains("train-images-idx3-ubyte"),
        "names the missing file"
    );
}

#[test]
fn corrupt_idx_files_give_errors_that_say_what_is_wrong() {
    let gz = std::fs::read(format!("{MNIST}/t10k-labels-idx1-ubyte.gz")).unwrap();
    // Truncated gzip stream.
    let e = idx::parse(&gz[..gz.len() / 2], "cut.gz").unwrap_err();
    assert!(data_reason(e).contains("gzip"));
    // Wrong magic number.
    let e = idx::parse(&[1, 2, 3, 4, 0, 0, 0, 1, 9], "magic").unwrap_err();
    assert!(data_reason(e).contains("magic number"));
    // Unsupported dtype (0x0d = f32).
    let e = idx::parse(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], "dtype").unwrap_err();
    assert!(data_reason(e).contains("dtype 0x0d"));
    // Header says 3 values, payload has 2.
    let e = idx::parse(&[0, 0, 8, 1, 0, 0, 0, 3, 7, 7], "short").unwrap_err();
    assert!(data_reason(e).contains("header says"));
    // Truncated header and empty input.
    assert!(
        data_reason(idx::parse(&[0, 0, 8, 3, 0, 0], "hdr").unwrap_err())
            .contains("truncated header")
    );
    assert!(data_reason(idx::parse(&[], "empty").unwrap_err()).contains("too short"));
    // Huge dimensions do not allocate or overflow.
    let e = idx::parse(
        &[
            0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
        ],
        "huge",
    )
    .unwrap_err();
    assert!(matches!(e, Error::Data { .. }));
    // Images and labels of different lengths, or swapped.
    let img = idx::IdxArray {
        dims: vec![2, 2, 2],
        data: vec![0; 8],
    };
    let lab = idx::IdxArray {
        dims: vec![3],
        data: vec![0; 3],
    };
    assert!(
        data_reason(idx::mnist_dataset(img.clone(), lab.clone(), "i", "l").unwrap_err())
            .contains("3 labels for 2 images")
    );
    assert!(data_reason(idx::mnist_dataset(lab, img, "i", "l").unwrap_err()).contains("swapped"));
}

#[test]
fn csv_columns_by_name_or_index_with_quotes_and_header_detection() {
    let text = "\"YEAR\",\"SUNACTIVITY\"\n1700,5\n1701,11\n1702,16.5\n";
    let by_name = csv::parse_column(
        text,
        "t",
        &Column::Name("sunactivity".into()),
        Missing::Skip,
    )
    .unwrap();
    let by_index = csv::parse_column(text, "t", &Column::Index(1), Missing::Skip).unwrap();
    assert_eq!(by_name, vec![5.0, 11.0, 16.5]);
    assert_eq!(by_index, by_name);
    // No header: the first line is data.
    assert_eq!(
        csv::parse_column("1,2\n3,4\n", "t", &Column::Index(0), Missing::Skip).unwrap(),
        vec![1.0, 3.0]
    );
    let sun = csv::read_column(
        concat!(env!("CARGO_MANIFEST_DIR"), "/data/sunspots.csv"),
        &Column::Name("SUNACTIVITY".into()),
        Missing::Skip,
    )
    .unwrap();
    assert_eq!(sun.len(), 309);
    assert_eq!(sun[0], 5.0);
}

#[test]
fn csv_missing_values_are_skipped_or_interpolated() {
    let text = "d,v\n1,\n2,1.0\n3,NA\n4,\n5,4.0\n6,5\n7,nan\n";
    let skip = csv::parse_column(text, "t", &Column::Name("v".into()), Missing::Skip).unwrap();
    assert_eq!(skip, vec![1.0, 4.0, 5.0]);
    let interp =
        csv::parse_column(text, "t", &Column::Name("v".into()), Missing::Interpolate).unwrap();
    // Leading and trailing gaps dropped; 1 .. 4 over three steps.
    assert_eq!(interp, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    let co2 = concat!(env!("CARGO_MANIFEST_DIR"), "/data/co2.csv");
    let skipped = csv::read_column(co2, &Column::Name("co2".into()), Missing::Skip).unwrap();
    let filled = csv::read_column(co2, &Column::Name("co2".into()), Missing::Interpolate).unwrap();
    assert_eq!(skipped.len(), 2284 - 59);
    assert_eq!(filled.len(), 2284);
    assert!(filled.iter().all(|v| (300.0..400.0).contains(v)));
}

#[test]
fn csv_bad_input_gives_errors_naming_the_line() {
    let e = csv::parse_column(
        "d,v\n1,2\n2,abc\n",
        "bad.csv",
        &Column::Name("v".into()),
        Missing::Skip,
    )
    .unwrap_err();
    let r = data_reason(e);
    assert!(r.contains("line 3") && r.contains("abc"), "{r}");
    let r = data_reason(
        csv::parse_column("d,v\n1,2\n2\n", "t", &Column::Index(1), Missing::Skip).unwrap_err(),
    );
    assert!(r.contains("line 3"), "{r}");
    assert!(data_reason(
        csv::parse_column("d,v\n1,2\n", "t", &Column::Name("x".into()), Missing::Skip).unwrap_err()
    )
    .contains("no column named 'x'"));
    assert!(data_reason(
        csv::parse_column("d,v\n1,2\n", "t", &Column::Index(5), Missing::Skip).unwrap_err()
    )
    .contains("column 5"));
    assert!(data_reason(
        csv::parse_column("d,v\n1,inf\n", "t", &Column::Index(1), Missing::Skip).unwrap_err()
    )
    .contains("finite"));
    assert!(matches!(
        csv::parse_column("", "t", &Column::Index(0), Missing::Skip),
        Err(Error::Empty(_))
    ));
    assert!(matches!(
        csv::parse_column("v\nNA\n", "t", &Column::Index(0), Missing::Interpolate),
        Err(Error::Data { .. })
    ));
}

#[test]
fn csv_windows_have_next_value_targets() {
    let s: Vec<f32> = (0..10).map(|v| v as f32).collect();
    let d = csv::windows(&s, 3).unwrap();
    assert_eq!(d.x.shape(), vec![7, 3, 1]);
    let Inputs::Features { data: x, .. } = &d.x else {
        panic!()
    };
    let Some(Targets::Values { data: y, shape }) = &d.y else {
        panic!()
    };
    assert_eq!(shape, &vec![7, 1]);
    assert_eq!(&x[..3], &[0.0, 1.0, 2.0]);
    assert_eq!(y[0], 3.0);
    assert_eq!(&x[18..21], &[6.0, 7.0, 8.0]);
    assert_eq!(y[6], 9.0);
    assert!(matches!(csv::windows(&s, 10), Err(Error::Argument(_))));
    assert!(matches!(csv::windows(&s, 0), Err(Error::Argument(_))));
}

#[test]
fn scaling_is_fitted_on_the_training_part_only_and_inverts() {
    // A rising series: fitting on everything would give a different mean.
    let s: Vec<f32> = (0..100).map(|v| 10.0 + 2.0 * v as f32).collect();
    let sp = csv::split_windows(&s, 5, 0.8, Scaling::ZScore).unwrap();
    assert_eq!(sp.split, 80);
    let train_mean = s[..80].iter().sum::<f32>() / 80.0;
    assert!((sp.scaler.offset - train_mean).abs() < 1e-3);
    assert_eq!(sp.train.len(), 75);
    assert_eq!(sp.test.len(), 20);
    let Some(Targets::Values { data: y, .. }) = &sp.test.y else {
        panic!()
    };
    for (k, &v) in y.iter().enumerate() {
        assert!(
            (sp.scaler.inverse(v) - s[80 + k]).abs() < 1e-3,
            "inverse gives back the series"
        );
    }
    let mm = csv::split_windows(&s, 5, 0.5, Scaling::MinMax).unwrap();
    assert_eq!(mm.scaler.transform(s[0]), 0.0);
    assert_eq!(mm.scaler.transform(s[49]), 1.0);
    assert!(
        mm.scaler.transform(s[99]) > 1.0,
        "test part may leave [0, 1]: scaling was not fitted on it"
    );
    let c = Scaler::fit(Scaling::ZScore, &[3.0, 3.0]).unwrap();
    assert_eq!(c.scale, 1.0, "a constant series does not divide by zero");
    assert!(matches!(
        csv::split_windows(&s, 90, 0.8, Scaling::None),
        Err(Error::Argument(_))
    ));
    assert!(matches!(
        csv::split_windows(&s, 5, 1.0, Scaling::None),
        Err(Error::Argument(_))
    ));
}

#[test]
fn text_vocab_encodes_decodes_and_makes_next_char_sequences() {
    let v = Vocab::from_text("hello world").unwrap();
    assert_eq!(v.tokens(), [" ", "d", "e", "h", "l", "o", "r", "w"]);
    let ids = v.encode("hello").unwrap();
    assert_eq!(ids, vec![3, 2, 4, 4, 5]);
    assert_eq!(v.decode(&ids).unwrap(), "hello");
    assert!(matches!(v.encode("hex"), Err(Error::Argument(_))));
    assert!(matches!(v.decode(&[8]), Err(Error::TokenOutOfRange { .. })));
    assert_eq!(Vocab::from_json(&v.to_json()).unwrap(), v);
    assert!(Vocab::from_text("").is_err());

    let all = v.encode("hello world").unwrap();
    let d = text::sequences(&all, v.len(), 4, 3, Encoding::Ids).unwrap();
    // Starts 0, 3, 6 (6 + 4 + 1 <= 11).
    assert_eq!(d.x.shape(), vec![3, 4]);
    let Inputs::Tokens { ids: x, .. } = &d.x else {
        panic!()
    };
    let Some(Targets::Classes { data: y, shape }) = &d.y else {
        panic!()
    };
    assert_eq!(shape, &vec![3, 4]);
    assert_eq!(v.decode(&x[4..8]).unwrap(), "lo w");
    assert_eq!(v.decode(&y[4..8]).unwrap(), "o wo");
    let oh = text::sequences(&all, v.len(), 4, 3, Encoding::OneHot).unwrap();
    assert_eq!(oh.x.shape(), vec![3, 4, 8]);
    let Inputs::Features { data: f, .. } = &oh.x else {
        panic!()
    };
    assert_eq!(f.iter().sum::<f32>(), 12.0);
    assert_eq!(f[3], 1.0, "first step is 'h' = id 3");
    assert!(text::sequences(&all, v.len(), 11, 1, Encoding::Ids).is_err());
    assert!(matches!(
        text::sequences(&[0, 9, 1], 8, 1, 1, Encoding::Ids),
        Err(Error::TokenOutOfRange { .. })
    ));

    let corpus =
        text::read_text(concat!(env!("CARGO_MANIFEST_DIR"), "/data/fortunes.txt")).unwrap();
    assert_eq!(Vocab::from_text(&corpus).unwrap().len(), 95);
    let bad = tmp("latin1.txt");
    std::fs::write(&bad, [b'a', 0xe9, b'b']).unwrap();
    assert!(matches!(text::read_text(&bad), Err(Error::Data { .. })));
}
