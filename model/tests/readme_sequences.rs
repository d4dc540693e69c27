//! The README's BAIR, UCF-101 and TGIF command sequences, run as written
//! (`just <recipe> args` runs the release binary with those args) on small
//! fixtures in the upstream layouts: synthetic BAIR TFRecords, a UCF-101
//! tree and a TGIF TSV made of the real test videos and GIFs that
//! `./setup.sh` fetches. Only the scale is changed: every training and
//! sampling command gets flags for one step of a narrow model, so that the
//! sequence, not the model, is what is tested. Paths in angle brackets or
//! `/path/to/...` are the fixtures, and `<table printed above>` is the table
//! the previous `encode-latents` printed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn binaries() -> (PathBuf, PathBuf) {
    let vgpt = PathBuf::from(env!("CARGO_BIN_EXE_vgpt"));
    let data = vgpt.with_file_name("vgpt-data");
    assert!(data.is_file(), "{} missing: build the workspace's binaries", data.display());
    (vgpt, data)
}

fn testdata(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/testdata").join(name);
    assert!(path.is_file(), "{} missing: run ./setup.sh --no-demo", path.display());
    path
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// The `just` lines of the README's code block after `heading`, split at `&&`.
fn readme_commands(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let start = readme.find(heading).unwrap_or_else(|| panic!("README has no `{heading}`"));
    let block = readme[start..].split("```").nth(1).expect("a code block follows");
    block
        .lines()
        .map(|l| l.split(" # ").next().unwrap().trim())
        .flat_map(|l| l.split(" && ").map(str::trim).map(str::to_string).collect::<Vec<_>>())
        .filter(|l| l.starts_with("just "))
        .collect()
}

/// Flags that shrink a command to one step of a narrow model.
fn small(recipe: &str) -> &'static [&'static str] {
    match recipe {
        "train-vqvae" => &["--steps", "1", "--batch-size", "1", "--hidden", "16", "--no-progress"],
        "train-prior" => &[
            "--steps", "1", "--batch-size", "1", "--hidden", "8", "--layers", "1", "--heads", "1",
            "--eval-every", "100", "--eval-clips", "1", "--no-progress",
        ],
        "sample" => &["--batch", "1", "--no-mp4", "--no-progress"],
        "encode-latents" | "prepare" => &["--no-progress"],
        _ => &[],
    }
}

/// Runs `commands` in `cwd` with the fixtures in `paths`; returns every stdout.
fn run_sequence(cwd: &Path, commands: &[String], paths: &[(&str, &Path)]) {
    let (vgpt, data) = binaries();
    let mut table = String::new();
    for line in commands {
        let mut words: Vec<String> = line.split_whitespace().skip(1).map(str::to_string).collect();
        for w in words.iter_mut() {
            for (placeholder, path) in paths {
                if w == placeholder {
                    *w = path.display().to_string();
                }
            }
        }
        let line_text = words.join(" ").replace("<table printed above>", &table);
        let mut words: Vec<String> = line_text.split_whitespace().map(str::to_string).collect();
        let recipe = words.remove(0);
        let binary = if ["prepare", "verify", "info", "stats"].contains(&recipe.as_str()) { &data } else { &vgpt };
        let out = Command::new(binary)
            .current_dir(cwd)
            .arg(&recipe)
            .args(&words)
            .args(small(&recipe))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // Exit status 2 is prepare's "done, some inputs rejected".
        let accepted = out.status.success() || (recipe == "prepare" && out.status.code() == Some(2));
        assert!(accepted, "`{line}` failed:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
        if recipe == "encode-latents" {
            let at = stdout.find("/tokens/").expect("encode-latents prints its table") + "/tokens/".len();
            table = stdout[at..].split('/').next().unwrap().to_string();
        }
    }
}

#[test]
fn bair_as_the_readme_says() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("bair_raw/softmotion30_44k");
    videogpt_pipeline::testing::write_bair_split(&raw.join("train"), 2, 2, 30, 1).unwrap();
    // Test clip 17 is the README's context clip.
    videogpt_pipeline::testing::write_bair_split(&raw.join("test"), 1, 18, 16, 2).unwrap();
    let commands = readme_commands("**BAIR robot pushing**");
    assert!(commands.len() >= 6, "{commands:?}");
    run_sequence(tmp.path(), &commands, &[("/path/to/bair_raw", &tmp.path().join("bair_raw"))]);
    assert!(tmp.path().join("runs/prior-bair-action/config.json").is_file());
}

#[test]
fn ucf101_as_the_readme_says() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("ucf");
    let classes = ["ApplyEyeMakeup", "Basketball", "HandstandPushups", "YoYo"];
    let (mut train, mut test, mut index) = (String::new(), String::new(), String::new());
    for (i, class) in classes.iter().enumerate() {
        let video = if i % 2 == 0 { "opencv-doc/Megamind.avi" } else { "opencv-doc/vtest.avi" };
        for (group, list) in [(8, &mut train), (1, &mut test)] {
            let file = format!("{class}/v_{class}_g{group:02}_c01.avi");
            copy(&testdata(video), &raw.join("UCF-101").join(&file));
            list.push_str(&format!("{file}{}\r\n", if group == 8 { format!(" {}", i + 1) } else { String::new() }));
        }
        index.push_str(&format!("{} {class}\r\n", i + 1));
    }
    let lists = raw.join("ucfTrainTestlist");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::write(lists.join("classInd.txt"), index).unwrap();
    std::fs::write(lists.join("trainlist01.txt"), train).unwrap();
    std::fs::write(lists.join("testlist01.txt"), test).unwrap();
    let commands = readme_commands("**UCF-101**");
    run_sequence(tmp.path(), &commands, &[("/path/to/ucf", &raw)]);
    assert!(tmp.path().join("runs/prior-ucf101-64-ucf101/samples/seed-0/samples.png").is_file());
}

#[test]
fn tgif_as_the_readme_says() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("tgif");
    let mut tsv = String::new();
    for (name, text) in [
        ("camshift_face.gif", "a face is tracked"),
        ("meanshift_face.gif", "a man moves his head"),
        ("houghlinesdemo.gif", "lines are found in a picture"),
        ("convolution-example-matrix.gif", "a kernel slides over a matrix"),
    ] {
        copy(&testdata(&format!("opencv-doc/{name}")), &raw.join("gifs").join(name));
        tsv.push_str(&format!("https://38.media.tumblr.com/x/{name}\t{text}\n"));
    }
    std::fs::write(raw.join("tgif-v1.0.tsv"), tsv).unwrap();
    let commands: Vec<String> = readme_commands("**TGIF**").into_iter().filter(|c| !c.contains("vizdoom")).collect();
    assert_eq!(commands.len(), 4, "{commands:?}");
    run_sequence(tmp.path(), &commands, &[("/path/to/tgif", &raw)]);
    assert!(tmp.path().join("runs/prior-tgif-tgif/config.json").is_file());
}
