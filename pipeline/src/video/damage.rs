//! Counts the damage FFmpeg reports while one video decodes.
//!
//! FFmpeg conceals most bitstream damage: a flipped byte in an MPEG-4 or
//! H.264 frame, or garbage in a GIF's image data, still gives frames, and
//! the decoder only says so in its log ("Error at MB", "error while
//! decoding MB", "Invalid ... ", "partial file"). A log callback counts
//! every message at FFmpeg's error level or worse and keeps the first one,
//! for the video decoding on the calling thread ([`DamageScope`]); frames
//! the decoder itself marks corrupt or concealed count too.
//!
//! Messages are attributed by where they come from: the decoder's codec
//! context (and the copies its frame threads log with) has `opaque` pointing
//! at the counter ([`DamageScope::attach`]); the demuxer ("partial file",
//! bad chunk sizes) and its parser of the video stream log on the thread
//! that reads the video, which the scope marks. Codec contexts of other
//! streams (audio parsers) are not counted.

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ffmpeg_next::ffi;

/// What FFmpeg reported about one video.
#[derive(Debug, Default)]
pub struct DamageCounter {
    reports: AtomicUsize,
    first: Mutex<Option<String>>,
}

impl DamageCounter {
    /// Error-level messages plus frames flagged corrupt or concealed.
    pub fn reports(&self) -> usize {
        self.reports.load(Ordering::Relaxed)
    }

    /// The first error message, trimmed, when there was one.
    pub fn first(&self) -> Option<String> {
        self.first.lock().map(|f| f.clone()).unwrap_or_default()
    }

    fn report(&self, message: Option<String>) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        if let Some(message) = message {
            if let Ok(mut first) = self.first.lock() {
                first.get_or_insert(message);
            }
        }
    }

    /// Counts a decoded frame the decoder marked as corrupt or concealed.
    pub fn check_frame(&self, frame: *const ffi::AVFrame) {
        // SAFETY: `frame` is a valid frame the decoder just returned.
        let (flags, errors) = unsafe { ((*frame).flags, (*frame).decode_error_flags) };
        if flags & ffi::AV_FRAME_FLAG_CORRUPT as c_int != 0 || errors != 0 {
            self.report(Some(format!(
                "frame marked corrupt by the decoder (error flags {errors:#x})"
            )));
        }
    }
}

thread_local! {
    static CURRENT: Cell<*const DamageCounter> = const { Cell::new(std::ptr::null()) };
}

/// Counters of the videos being decoded now, by address: a codec context's
/// `opaque` is only followed when it is one of these (other code may use
/// `opaque` for its own data).
static LIVE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn is_live(counter: *const DamageCounter) -> bool {
    !counter.is_null() && LIVE.lock().is_ok_and(|live| live.contains(&(counter as usize)))
}

/// While alive, FFmpeg's error messages on this thread go to `counter`.
pub struct DamageScope<'a> {
    counter: &'a DamageCounter,
    previous: *const DamageCounter,
}

impl<'a> DamageScope<'a> {
    pub fn enter(counter: &'a DamageCounter) -> Self {
        install_callback();
        if let Ok(mut live) = LIVE.lock() {
            live.push(counter as *const DamageCounter as usize);
        }
        let previous = CURRENT.with(|c| c.replace(counter as *const _));
        Self { counter, previous }
    }

    /// Points the codec context's `opaque` at the counter, so that the
    /// decoder's own threads report to it too. The context must not outlive
    /// the scope.
    pub fn attach(&self, context: *mut ffi::AVCodecContext) {
        // SAFETY: the caller passes a live codec context it owns; FFmpeg
        // leaves `opaque` to the user and copies it into its thread contexts.
        unsafe { (*context).opaque = self.counter as *const DamageCounter as *mut c_void };
    }
}

impl Drop for DamageScope<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
        if let Ok(mut live) = LIVE.lock() {
            let me = self.counter as *const DamageCounter as usize;
            if let Some(at) = live.iter().position(|&c| c == me) {
                live.swap_remove(at);
            }
        }
    }
}

/// The name FFmpeg gives the logging object ("h264", "mov,mp4,m4a,...").
fn component_name(object: *mut c_void) -> Option<String> {
    if object.is_null() {
        return None;
    }
    // SAFETY: as in the callback: the object starts with its AVClass
    // pointer, and `item_name` is FFmpeg's own naming function for it.
    unsafe {
        let class = *(object as *const *const ffi::AVClass);
        let name = class.as_ref()?.item_name?(object);
        (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

fn install_callback() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: the callback is a plain function valid for the whole process.
    ONCE.call_once(|| unsafe { ffi::av_log_set_callback(Some(log_callback)) });
}

/// FFmpeg's log callback: counts messages at `AV_LOG_ERROR` or worse for the
/// video being decoded; everything else is dropped (errors reach the user
/// through [`super::VideoError`] and the reject reasons).
unsafe extern "C" fn log_callback(
    object: *mut c_void,
    level: c_int,
    format: *const c_char,
    args: *mut ffi::__va_list_tag,
) {
    if level > ffi::AV_LOG_ERROR as c_int {
        return;
    }
    let mut counter = CURRENT.with(|c| c.get());
    if !object.is_null() {
        // SAFETY: an object FFmpeg logs with starts with its AVClass pointer,
        // and one of the codec context class is an AVCodecContext.
        unsafe {
            let class = *(object as *const *const ffi::AVClass);
            if class == ffi::avcodec_get_class() {
                let context = &*(object as *const ffi::AVCodecContext);
                let attached = context.opaque as *const DamageCounter;
                if is_live(attached) {
                    // Our decoder, or a copy its frame threads log with.
                    counter = attached;
                } else if context.codec_type != ffi::AVMediaType::AVMEDIA_TYPE_VIDEO {
                    // The demuxer's parser of an audio or data stream.
                    return;
                }
            }
        }
    }
    let mut line = [0 as c_char; 256];
    // No "[h264 @ 0x...]" prefix: it holds an address, and reject reasons
    // must be the same on every run. The component's name replaces it.
    let mut prefix: c_int = 0;
    // SAFETY: FFmpeg formats its own message into our buffer (truncating it).
    let written = unsafe {
        ffi::av_log_format_line2(object, level, format, args, line.as_mut_ptr(), line.len() as c_int, &mut prefix)
    };
    let message = (written >= 0).then(|| {
        // SAFETY: av_log_format_line2 NUL-terminates within the buffer.
        let text = unsafe { CStr::from_ptr(line.as_ptr()) }.to_string_lossy().trim().to_owned();
        match component_name(object) {
            Some(name) => format!("{name}: {text}"),
            None => text,
        }
    });
    // SAFETY: the pointer is a counter that outlives its scope and contexts.
    unsafe { (*counter).report(message) };
}
