//! `prepare --task I --tasks N`: tasks of a job array (flags, Slurm's array
//! variables, or MPI ranks' variables) each build their shards, the last to
//! finish (or `--merge`) writes the tables, and the dataset folder is byte
//! for byte the one a single process writes, for Moving MNIST and a video
//! source.

mod common;

use std::process::Output;

use common::videos::video;
use common::{real_mnist_raw, text, vgpt_data};
use videogpt_pipeline::testing::assert_same_tree;

fn prepare(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = vgpt_data();
    command.arg("prepare").args(args).arg("--no-progress");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("vgpt-data runs")
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

#[test]
fn moving_mnist_tasks_merge_into_the_single_process_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = real_mnist_raw();
    let args = |root: &str| -> Vec<String> {
        let root = tmp.path().join(root).display().to_string();
        [
            "moving-mnist",
            "--raw",
            raw.to_str().unwrap(),
            "--root",
            &root,
            "--train-sequences",
            "50",
            "--test-sequences",
            "20",
            "--seq-len",
            "8",
            "--videos-per-shard",
            "7",
        ]
        .map(String::from)
        .to_vec()
    };
    let with = |root: &str, extra: &[&str]| {
        let mut a = args(root);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    ok(prepare(&strs(&args("one")), &[]));

    // Two tasks one after the other: the first leaves the tables to come,
    // the second finds every shard and writes them.
    let first = ok(prepare(
        &strs(&with("two", &["--task", "0", "--tasks", "2"])),
        &[],
    ));
    assert!(first.contains("shards of other tasks to come"), "{first}");
    assert!(
        !tmp.path()
            .join("two/moving-mnist/clips/train/index.json")
            .exists()
    );
    // A merge before every task is done names what is missing.
    let early = prepare(&strs(&with("two", &["--merge"])), &[]);
    assert!(
        !early.status.success() && text(&early).contains("shard-00001.clips"),
        "{}",
        text(&early)
    );
    ok(prepare(
        &strs(&with("two", &["--task", "1", "--tasks", "2"])),
        &[],
    ));
    assert_same_tree(
        &tmp.path().join("one/moving-mnist"),
        &tmp.path().join("two/moving-mnist"),
        "2 tasks",
    );
    // A later merge rewrites the same bytes.
    ok(prepare(&strs(&with("two", &["--merge"])), &[]));
    assert_same_tree(
        &tmp.path().join("one/moving-mnist"),
        &tmp.path().join("two/moving-mnist"),
        "merged again",
    );

    // Three tasks of a Slurm job array (`--array=1-3`) at once, then a merge
    // (one of them may already have written the tables).
    let array = args("three");
    let children: Vec<_> = (1..=3)
        .map(|id| {
            let id = id.to_string();
            let env = [
                ("SLURM_ARRAY_TASK_ID", id.as_str()),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_MAX", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ];
            let mut command = vgpt_data();
            command.arg("prepare").args(&array).arg("--no-progress");
            for (k, v) in env {
                command.env(k, v);
            }
            command
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        ok(child.wait_with_output().unwrap());
    }
    ok(prepare(&strs(&with("three", &["--merge"])), &[]));
    assert_same_tree(
        &tmp.path().join("one/moving-mnist"),
        &tmp.path().join("three/moving-mnist"),
        "3 array tasks",
    );

    // Ranks of an MPI launcher: the rank and size it exports.
    for rank in ["1", "0"] {
        ok(prepare(
            &strs(&args("ranks")),
            &[
                ("OMPI_COMM_WORLD_RANK", rank),
                ("OMPI_COMM_WORLD_SIZE", "2"),
            ],
        ));
    }
    assert_same_tree(
        &tmp.path().join("one/moving-mnist"),
        &tmp.path().join("ranks/moving-mnist"),
        "2 ranks",
    );

    let bad = prepare(&strs(&with("bad", &["--task", "2", "--tasks", "2"])), &[]);
    assert!(
        !bad.status.success() && text(&bad).contains("--task 2: must be below --tasks 2"),
        "{}",
        text(&bad)
    );
}

#[test]
fn ucf101_tasks_merge_into_the_single_process_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let videos = raw.join("UCF-101");
    let put = |from: &str, to: &str| {
        let to = videos.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(video(from), to).unwrap();
    };
    put(
        "opencv-doc/Megamind.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
    );
    put(
        "opencv-doc/vtest.avi",
        "HandstandPushups/v_HandStandPushups_g08_c01.avi",
    );
    put(
        "opencv-doc/Megamind_bugy.avi",
        "HandstandPushups/v_HandStandPushups_g09_c01.avi",
    );
    put(
        "opencv-doc/tree.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
    );
    let lists = raw.join("ucfTrainTestlist");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::write(
        lists.join("classInd.txt"),
        "1 ApplyEyeMakeup\n2 HandstandPushups\n",
    )
    .unwrap();
    std::fs::write(
        lists.join("trainlist01.txt"),
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nHandstandPushups/v_HandStandPushups_g08_c01.avi 2\n\
         HandstandPushups/v_HandStandPushups_g09_c01.avi 2\n",
    )
    .unwrap();
    std::fs::write(
        lists.join("testlist01.txt"),
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n",
    )
    .unwrap();
    let args = |root: &str, extra: &[&str]| -> Vec<String> {
        let root = tmp.path().join(root).display().to_string();
        let mut a: Vec<String> = [
            "ucf101",
            raw.to_str().unwrap(),
            "--root",
            &root,
            "--seq-len",
            "8",
            "--resolution",
            "32",
            "--videos-per-shard",
            "1",
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| {
        ok(prepare(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            &[],
        ))
    };
    run(args("one", &[]));
    for task in ["1", "0"] {
        run(args("two", &["--task", task, "--tasks", "2"]));
    }
    assert_same_tree(
        &tmp.path().join("one/ucf101-32"),
        &tmp.path().join("two/ucf101-32"),
        "2 tasks",
    );
}
