//! UCF-101 in its upstream layout:
//!
//! ```text
//! <raw>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi
//! <raw>/ucfTrainTestlist/classInd.txt          "1 ApplyEyeMakeup" (1-based)
//! <raw>/ucfTrainTestlist/trainlistNN.txt       "ApplyEyeMakeup/v_..._g08_c01.avi 1"
//! <raw>/ucfTrainTestlist/testlistNN.txt        "ApplyEyeMakeup/v_..._g01_c01.avi"
//! ```
//!
//! Labels are 0-based classInd indices, taken from the class folder of each
//! list entry. Class names are matched case-insensitively, and a listed file
//! is found case-insensitively inside its folder: upstream spells one class
//! `HandstandPushups` in classInd.txt, the folder and the lists, but
//! `HandStandPushups` in the file names, and mirrors differ in which spelling
//! the folder uses. Code that takes the class from the file name (as some
//! reference loaders do) loses that class. Listed files missing on disk are
//! rejects; the rest of the split is prepared.

use crate::shards::metadata::Conditioning;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::video_files::{VideoFile, VideoFiles};
use crate::error::{IoContext, PipelineError, Result};
use crate::shards::Reject;
use crate::video::DecodeOptions;

/// Where the videos and the split lists are.
#[derive(Debug, Clone, PartialEq)]
pub struct Ucf101Layout {
    pub raw: PathBuf,
    pub videos: PathBuf,
    pub lists: PathBuf,
}

/// Finds `UCF-101/` and `ucfTrainTestlist/` under `raw`.
pub fn discover(raw: &Path) -> Result<Ucf101Layout> {
    let videos = raw.join("UCF-101");
    let lists = raw.join("ucfTrainTestlist");
    for (dir, what) in [
        (&videos, "the class folders"),
        (&lists, "classInd.txt and the split lists"),
    ] {
        if !dir.is_dir() {
            return Err(PipelineError::format(
                dir,
                format!(
                    "not found; expected the upstream UCF-101 layout with {what} \
                     (UCF-101/<Class>/*.avi and ucfTrainTestlist/) under {}",
                    raw.display()
                ),
            ));
        }
    }
    Ok(Ucf101Layout {
        raw: raw.into(),
        videos,
        lists,
    })
}

/// classInd.txt: class name (lowercased) to 0-based label, and the names.
pub fn read_class_index(path: &Path) -> Result<(HashMap<String, i32>, Vec<String>)> {
    let text = std::fs::read_to_string(path).at(path)?;
    let mut by_name = HashMap::new();
    let mut names = Vec::new();
    for (n, line) in super::text_lines(&text).enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad =
            |what: &str| PipelineError::format(path, format!("line {}: {what}: {}", n + 1, crate::names::quote(line)));
        let (index, name) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("expected `<index> <ClassName>`"))?;
        let index: i32 = index
            .parse()
            .map_err(|_| bad("the index is not a number"))?;
        if index != names.len() as i32 + 1 {
            return Err(bad(&format!(
                "indices must run 1, 2, 3, ...; expected {}",
                names.len() + 1
            )));
        }
        let name = name.trim().to_owned();
        // Labels come from the class folder, matched case-insensitively, so
        // two names that differ only by case would share one folder.
        if let Some(first) = by_name.insert(name.to_lowercase(), index - 1) {
            return Err(bad(&format!(
                "class {} is already listed as class {} (names are matched case-insensitively)",
                crate::names::quote(&name),
                first + 1
            )));
        }
        names.push(name);
    }
    if names.is_empty() {
        return Err(PipelineError::format(path, "lists no classes"));
    }
    Ok((by_name, names))
}

/// The videos of `split` ("train" or "test") in list `split_number` (1-3).
pub fn open(
    layout: &Ucf101Layout,
    split: &str,
    split_number: u32,
    options: DecodeOptions,
) -> Result<VideoFiles> {
    let list_kind = match split {
        "train" => "trainlist",
        "test" => "testlist",
        other => {
            return Err(PipelineError::config(format!(
                "UCF-101 has the splits train and test, not `{other}`"
            )));
        }
    };
    let list = layout
        .lists
        .join(format!("{list_kind}{split_number:02}.txt"));
    let (classes, names) = read_class_index(&layout.lists.join("classInd.txt"))?;
    let text = std::fs::read_to_string(&list).at(&list)?;
    let list_name = list
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut folders = FolderCache::default();
    let mut files = Vec::new();
    let mut rejects = Vec::new();
    for (n, line) in super::text_lines(&text).enumerate() {
        let entry = line.split_whitespace().next().unwrap_or("");
        if entry.is_empty() {
            continue;
        }
        let reject = |reason: String| Reject {
            file: format!("UCF-101/{}", crate::names::quote(entry).trim_matches('`')),
            record: Some(n as u64 + 1),
            reason,
        };
        // The entry must stay inside UCF-101/, in the folder of the class it
        // is labelled with: `Class/../Other/v.avi` would take another class's
        // video under this label.
        if let Some(problem) = crate::names::entry_problem(entry) {
            rejects.push(reject(format!("{list_name}: the entry {problem}")));
            continue;
        }
        let Some((class, file_name)) = entry.split_once('/').filter(|(_, f)| !f.contains('/')) else {
            rejects.push(reject(format!("{list_name}: expected <Class>/<file>.avi")));
            continue;
        };
        let Some(&label) = classes.get(&class.to_lowercase()) else {
            rejects.push(reject(format!(
                "{list_name}: class `{class}` is not in classInd.txt"
            )));
            continue;
        };
        match folders.find(&layout.videos, class, file_name) {
            Some(path) => files.push(VideoFile {
                path,
                label: Some(label),
                text: None,
                actions: None,
            }),
            None => rejects.push(reject(format!(
                "listed in {list_name} but not found on disk"
            ))),
        }
    }
    if files.is_empty() && rejects.is_empty() {
        return Err(PipelineError::format(&list, "lists no videos"));
    }
    let describe = serde_json::json!({
        "kind": "ucf101",
        "split_list": list_name,
        "split_number": split_number,
        "classes": names,
    });
    Ok(VideoFiles::new(
        "ucf101",
        split,
        &layout.raw,
        options,
        files,
        Conditioning { label: true, ..Conditioning::default() },
        rejects,
        describe,
    ))
}

/// Case-insensitive lookups of class folders and the files in them, each
/// folder listed once.
#[derive(Default)]
struct FolderCache {
    folders: Option<HashMap<String, PathBuf>>,
    files: HashMap<PathBuf, HashMap<String, PathBuf>>,
}

impl FolderCache {
    fn find(&mut self, videos: &Path, class: &str, file_name: &str) -> Option<PathBuf> {
        let exact = videos.join(class).join(file_name);
        if exact.is_file() {
            return Some(exact);
        }
        let folders = self
            .folders
            .get_or_insert_with(|| lowercase_listing(videos));
        let folder = folders.get(&class.to_lowercase())?.clone();
        let files = self
            .files
            .entry(folder.clone())
            .or_insert_with(|| lowercase_listing(&folder));
        files.get(&file_name.to_lowercase()).cloned()
    }
}

fn lowercase_listing(dir: &Path) -> HashMap<String, PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().to_lowercase(), e.path()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_index_is_zero_based_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("classInd.txt");
        std::fs::write(&p, "1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n").unwrap();
        let (by_name, names) = read_class_index(&p).unwrap();
        assert_eq!(by_name["handstandpushups"], 1);
        assert_eq!(names, ["ApplyEyeMakeup", "HandstandPushups"]);
        std::fs::write(&p, "1 A\n3 B\n").unwrap();
        let e = read_class_index(&p).unwrap_err().to_string();
        assert!(e.contains("classInd.txt") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn class_names_that_collide_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("classInd.txt");
        for text in ["1 Archery\n2 Archery\n", "1 Archery\n2 ARCHERY\n"] {
            std::fs::write(&p, text).unwrap();
            let e = read_class_index(&p).unwrap_err().to_string();
            assert!(e.contains("line 2") && e.contains("already listed as class 1"), "{e}");
        }
        // Old-Mac line endings are lines too.
        std::fs::write(&p, "1 Archery\r2 Basketball\r").unwrap();
        assert_eq!(read_class_index(&p).unwrap().1, ["Archery", "Basketball"]);
    }

    #[test]
    fn list_entries_stay_in_their_class_folder() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        for class in ["Archery", "Basketball"] {
            std::fs::create_dir_all(raw.join("UCF-101").join(class)).unwrap();
            std::fs::write(raw.join("UCF-101").join(class).join(format!("v_{class}.avi")), b"x").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/v.avi"), b"x").unwrap();
        let lists = raw.join("ucfTrainTestlist");
        std::fs::create_dir_all(&lists).unwrap();
        std::fs::write(lists.join("classInd.txt"), "1 Archery\n2 Basketball\n").unwrap();
        std::fs::write(
            lists.join("testlist01.txt"),
            "Archery/v_Archery.avi\rArchery/../Basketball/v_Basketball.avi\r\
             Archery/../../../outside/v.avi\rArchery//abs/v.avi\r/etc/passwd\r",
        )
        .unwrap();
        let layout = discover(&raw).unwrap();
        let files = open(&layout, "test", 1, DecodeOptions::default()).unwrap();
        use super::super::ClipSource;
        assert_eq!(files.videos().len(), 1, "only the one honest entry");
        let rejects = files.plan_rejects();
        assert_eq!(rejects.len(), 4, "{rejects:?}");
        assert!(rejects.iter().all(|r| r.reason.contains("testlist01.txt")), "{rejects:?}");
    }
}
