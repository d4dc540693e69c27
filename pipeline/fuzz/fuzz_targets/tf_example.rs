#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    videogpt_pipeline::fuzzing::run("tf_example", data);
});
