//! The Node-API surface. Types as seen from JavaScript are in src/codec/native.ts.
//!
//! - `encodeFrame(payloads, compress)` / `decodeFrame(frame)`: whole frames in one call.
//! - `sealFrame(frame, count, compress)` / `openFrame(frame)`: the byte work only (checksum, LZ4,
//!   header and limit checks), for a caller that lays out and splits payloads itself.
//! - `sdNotify(message)`, `crc32c(data, seed)`, and the strings `lz4Version`, `crc32cImpl`.
//!
//! Cost model (measured on Node 20, 1,000 payloads of ~90 bytes): a Node-API call that touches an
//! object costs ~60–130 ns, so per payload `encodeFrame` spends ~180 ns in `napi_get_element` +
//! `napi_get_buffer_info` and `decodeFrame` ~130 ns in `napi_create_typedarray` + `napi_set_element`,
//! more than the LZ4 and checksum work itself. JavaScript lays out a payload in ~20 ns and makes a
//! view in ~15–30 ns, so the codec (src/codec/native.ts) uses `sealFrame`/`openFrame` and does the
//! per-payload part in JavaScript; `encodeFrame`/`decodeFrame` stay as the self-contained API.
//! `decodeFrame` hands out Uint8Array views over one ArrayBuffer (the decompressed body, or the
//! input frame itself when it is not compressed) instead of copying each payload.

use crate::crc32c::{crc32c_update, implementation};
use crate::fail::{Fail, Kind, CODE_CODEC, CODE_NATIVE};
use crate::frame::{self, FLAG_LZ4, FRAME_HEADER_BYTES, MAX_FRAME_PAYLOADS};
use crate::napi::*;
use crate::{lz4, notify, wait};
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;

/// Payload views are created under handle scopes of this many, so a million-payload frame does not
/// pile a million handles into the callback's scope.
const HANDLE_CHUNK: usize = 4096;

macro_rules! cstr {
    ($s:literal) => {
        concat!($s, "\0").as_ptr().cast::<c_char>()
    };
}

fn check(env: napi_env, status: napi_status, what: &str) -> Result<(), Fail> {
    if status == NAPI_OK {
        return Ok(());
    }
    let mut pending = false;
    // SAFETY: env is the live environment of the current callback.
    unsafe { napi_is_exception_pending(env, &mut pending) };
    if pending || status == NAPI_PENDING_EXCEPTION {
        Err(Fail::Pending)
    } else {
        Err(Fail::new(
            Kind::Error,
            CODE_NATIVE,
            format!("metaguard native: {what} failed (napi_status {status})"),
        ))
    }
}

unsafe fn js_string(env: napi_env, s: &str) -> napi_value {
    let mut v = null_mut();
    napi_create_string_utf8(env, s.as_ptr().cast(), s.len(), &mut v);
    v
}

/// Throws `fail` as a JavaScript error with its `code` (and `syscall` / `errno` for OS failures).
unsafe fn throw(env: napi_env, fail: Fail) {
    let Fail::Throw {
        kind,
        code,
        message,
        os,
    } = fail
    else {
        return;
    };
    let code_v = js_string(env, code);
    let msg_v = js_string(env, &message);
    let mut err = null_mut();
    let status = match kind {
        Kind::Error => napi_create_error(env, code_v, msg_v, &mut err),
        Kind::TypeError => napi_create_type_error(env, code_v, msg_v, &mut err),
        Kind::RangeError => napi_create_range_error(env, code_v, msg_v, &mut err),
    };
    if status != NAPI_OK {
        return;
    }
    if let Some((syscall, errno)) = os {
        napi_set_named_property(env, err, cstr!("syscall"), js_string(env, syscall));
        let mut errno_v = null_mut();
        napi_create_int32(env, errno, &mut errno_v);
        napi_set_named_property(env, err, cstr!("errno"), errno_v);
    }
    napi_throw(env, err);
}

/// Runs a callback body: errors become JavaScript exceptions, and a Rust panic (a bug) becomes a
/// thrown MG_ERR_NATIVE instead of unwinding into Node (which would abort the process).
unsafe fn run(env: napi_env, body: impl FnOnce() -> Result<napi_value, Fail>) -> napi_value {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(fail)) => {
            throw(env, fail);
            null_mut()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            throw(
                env,
                Fail::new(
                    Kind::Error,
                    CODE_NATIVE,
                    format!("metaguard native: internal error: {what}"),
                ),
            );
            null_mut()
        }
    }
}

unsafe fn args<const N: usize>(env: napi_env, info: napi_callback_info) -> Result<[napi_value; N], Fail> {
    let mut argc = N;
    let mut argv = [null_mut(); N];
    check(
        env,
        napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), null_mut(), null_mut()),
        "napi_get_cb_info",
    )?;
    Ok(argv)
}

unsafe fn type_of(env: napi_env, value: napi_value) -> Result<napi_valuetype, Fail> {
    let mut t = 0;
    check(env, napi_typeof(env, value, &mut t), "napi_typeof")?;
    Ok(t)
}

unsafe fn bytes<'a>(data: *mut c_void, len: usize) -> &'a [u8] {
    if len == 0 || data.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(data as *const u8, len)
    }
}

unsafe fn bytes_mut<'a>(data: *mut c_void, len: usize) -> &'a mut [u8] {
    if len == 0 || data.is_null() {
        &mut []
    } else {
        std::slice::from_raw_parts_mut(data as *mut u8, len)
    }
}

/// `encodeFrame(payloads: Uint8Array[], compress = true): Buffer`
unsafe extern "C" fn encode_frame(env: napi_env, info: napi_callback_info) -> napi_value {
    run(env, || encode_frame_impl(env, info))
}

unsafe fn encode_frame_impl(env: napi_env, info: napi_callback_info) -> Result<napi_value, Fail> {
    let [list, compress_v] = args::<2>(env, info)?;
    let mut is_array = false;
    check(env, napi_is_array(env, list, &mut is_array), "napi_is_array")?;
    if !is_array {
        return Err(Fail::new(
            Kind::TypeError,
            CODE_CODEC,
            "encodeFrame: payloads must be an array of Uint8Array",
        ));
    }
    let compress = match type_of(env, compress_v)? {
        NAPI_UNDEFINED => true,
        NAPI_BOOLEAN => {
            let mut b = false;
            check(env, napi_get_value_bool(env, compress_v, &mut b), "napi_get_value_bool")?;
            b
        }
        _ => {
            return Err(Fail::new(
                Kind::TypeError,
                CODE_CODEC,
                "encodeFrame: compress must be a boolean",
            ))
        }
    };
    let mut n = 0u32;
    check(env, napi_get_array_length(env, list, &mut n), "napi_get_array_length")?;
    let n = n as usize;
    if n > MAX_FRAME_PAYLOADS {
        return Err(Fail::new(
            Kind::RangeError,
            CODE_CODEC,
            format!("frame: {n} payloads exceed the limit of {MAX_FRAME_PAYLOADS} per frame"),
        ));
    }
    // All element reads first: they are the only calls that can run JavaScript (getters, proxies).
    // After this loop no JavaScript runs until we return, so the byte ranges below stay valid (the
    // handles keep every payload alive, and nothing can detach its buffer).
    let mut values: Vec<napi_value> = Vec::with_capacity(n);
    for i in 0..n {
        let mut v = null_mut();
        check(env, napi_get_element(env, list, i as u32, &mut v), "napi_get_element")?;
        values.push(v);
    }
    let mut parts: Vec<&[u8]> = Vec::with_capacity(n);
    for (i, &v) in values.iter().enumerate() {
        let mut data = null_mut();
        let mut len = 0usize;
        // Accepts any ArrayBufferView (Buffer, Uint8Array, …) and returns its bytes.
        let status = napi_get_buffer_info(env, v, &mut data, &mut len);
        if status == NAPI_INVALID_ARG {
            return Err(Fail::new(
                Kind::TypeError,
                CODE_CODEC,
                format!("encodeFrame: payload {i} is not a Uint8Array"),
            ));
        }
        check(env, status, "napi_get_buffer_info")?;
        parts.push(bytes(data, len));
    }
    let mut result = null_mut();
    frame::encode(&parts, compress, |size| {
        let mut data = null_mut();
        check(
            env,
            napi_create_buffer(env, size, &mut data, &mut result),
            "napi_create_buffer",
        )?;
        Ok(bytes_mut(data, size))
    })?;
    Ok(result)
}

/// `decodeFrame(frame: Uint8Array): Uint8Array[]`
unsafe extern "C" fn decode_frame(env: napi_env, info: napi_callback_info) -> napi_value {
    run(env, || decode_frame_impl(env, info))
}

unsafe fn decode_frame_impl(env: napi_env, info: napi_callback_info) -> Result<napi_value, Fail> {
    let [input] = args::<1>(env, info)?;
    let mut kind = -1;
    let mut length = 0usize;
    let mut data = null_mut();
    let mut input_ab = null_mut();
    let mut input_offset = 0usize;
    let status = napi_get_typedarray_info(
        env,
        input,
        &mut kind,
        &mut length,
        &mut data,
        &mut input_ab,
        &mut input_offset,
    );
    if status == NAPI_INVALID_ARG || (status == NAPI_OK && kind != NAPI_UINT8_ARRAY) {
        return Err(Fail::new(
            Kind::TypeError,
            CODE_CODEC,
            "decodeFrame: frame must be a Uint8Array",
        ));
    }
    check(env, status, "napi_get_typedarray_info")?;
    let frame = bytes(data, length);
    let header = frame::open(frame)?;

    // Where the payload views point: one ArrayBuffer and the body's offset in it.
    let (body_ab, body_offset, body): (napi_value, usize, &[u8]) = if header.flags & FLAG_LZ4 != 0 {
        // The only allocation a frame causes, bounded by `open` (limit and 255x plausibility).
        let mut out = null_mut();
        let mut ptr = null_mut();
        check(
            env,
            napi_create_arraybuffer(env, header.raw_length, &mut ptr, &mut out),
            "napi_create_arraybuffer",
        )?;
        let dst = bytes_mut(ptr, header.raw_length);
        frame::decompress_body(frame, &header, dst)?;
        (out, 0, dst)
    } else {
        let mut is_ab = false;
        check(
            env,
            napi_is_arraybuffer(env, input_ab, &mut is_ab),
            "napi_is_arraybuffer",
        )?;
        if is_ab {
            // Zero-copy, like the JS codec's `frame.subarray`: payloads alias the frame.
            (
                input_ab,
                input_offset + FRAME_HEADER_BYTES,
                &frame[FRAME_HEADER_BYTES..],
            )
        } else {
            // A SharedArrayBuffer cannot back the typed arrays Node-API creates: copy the body.
            let mut out = null_mut();
            let mut ptr = null_mut();
            check(
                env,
                napi_create_arraybuffer(env, header.raw_length, &mut ptr, &mut out),
                "napi_create_arraybuffer",
            )?;
            let dst = bytes_mut(ptr, header.raw_length);
            dst.copy_from_slice(&frame[FRAME_HEADER_BYTES..]);
            (out, 0, &*dst)
        }
    };

    let mut spans = Vec::new();
    frame::split_body(body, header.count, &mut spans)?;

    let mut array = null_mut();
    check(
        env,
        napi_create_array_with_length(env, spans.len(), &mut array),
        "napi_create_array_with_length",
    )?;
    for (chunk_index, chunk) in spans.chunks(HANDLE_CHUNK).enumerate() {
        let mut scope = null_mut();
        check(env, napi_open_handle_scope(env, &mut scope), "napi_open_handle_scope")?;
        let base = chunk_index * HANDLE_CHUNK;
        let filled = (|| -> Result<(), Fail> {
            for (j, &(off, len)) in chunk.iter().enumerate() {
                let mut view = null_mut();
                check(
                    env,
                    napi_create_typedarray(env, NAPI_UINT8_ARRAY, len, body_ab, body_offset + off, &mut view),
                    "napi_create_typedarray",
                )?;
                check(
                    env,
                    napi_set_element(env, array, (base + j) as u32, view),
                    "napi_set_element",
                )?;
            }
            Ok(())
        })();
        napi_close_handle_scope(env, scope);
        filled?;
    }
    Ok(array)
}

/// `sealFrame(frame: Uint8Array, count: number, compress = true): Uint8Array` — the fast encode path.
/// The caller reserved 20 header bytes and laid out the raw body of `count` payloads after them;
/// the result is `frame` itself with header and checksum written in, or, when the body compressed,
/// a new Buffer. (Laying out payloads costs ~20 ns each in JavaScript against ~200 ns through
/// `napi_get_element` + `napi_get_buffer_info`, which is why `encodeFrame` is not the fast path.)
unsafe extern "C" fn seal_frame(env: napi_env, info: napi_callback_info) -> napi_value {
    run(env, || {
        let [frame_v, count_v, compress_v] = args::<3>(env, info)?;
        let mut data = null_mut();
        let mut len = 0usize;
        let status = napi_get_buffer_info(env, frame_v, &mut data, &mut len);
        if status == NAPI_INVALID_ARG {
            return Err(Fail::new(
                Kind::TypeError,
                CODE_CODEC,
                "sealFrame: frame must be a Uint8Array",
            ));
        }
        check(env, status, "napi_get_buffer_info")?;
        if type_of(env, count_v)? != NAPI_NUMBER {
            return Err(Fail::new(
                Kind::TypeError,
                CODE_CODEC,
                "sealFrame: count must be a number",
            ));
        }
        let mut count = 0u32;
        check(
            env,
            napi_get_value_uint32(env, count_v, &mut count),
            "napi_get_value_uint32",
        )?;
        let compress = match type_of(env, compress_v)? {
            NAPI_UNDEFINED => true,
            NAPI_BOOLEAN => {
                let mut b = false;
                check(env, napi_get_value_bool(env, compress_v, &mut b), "napi_get_value_bool")?;
                b
            }
            _ => {
                return Err(Fail::new(
                    Kind::TypeError,
                    CODE_CODEC,
                    "sealFrame: compress must be a boolean",
                ))
            }
        };
        let mut fresh = null_mut();
        let how = frame::seal_laid_out(bytes_mut(data, len), count as usize, compress, |size| {
            let mut out = null_mut();
            check(
                env,
                napi_create_buffer(env, size, &mut out, &mut fresh),
                "napi_create_buffer",
            )?;
            Ok(bytes_mut(out, size))
        })?;
        Ok(if how == frame::Sealed::Compressed {
            fresh
        } else {
            frame_v
        })
    })
}

/// `openFrame(frame: Uint8Array): Buffer | null` — the fast decode path. Checks the header, limits
/// and checksum; returns the decompressed raw body of a compressed frame, or null when the raw body
/// is stored as is (`frame.subarray(20)`). The caller splits the body into payloads.
unsafe extern "C" fn open_frame(env: napi_env, info: napi_callback_info) -> napi_value {
    run(env, || {
        let [frame_v] = args::<1>(env, info)?;
        let mut data = null_mut();
        let mut len = 0usize;
        let status = napi_get_buffer_info(env, frame_v, &mut data, &mut len);
        if status == NAPI_INVALID_ARG {
            return Err(Fail::new(
                Kind::TypeError,
                CODE_CODEC,
                "openFrame: frame must be a Uint8Array",
            ));
        }
        check(env, status, "napi_get_buffer_info")?;
        let frame = bytes(data, len);
        let header = frame::open(frame)?;
        let mut out = null_mut();
        if header.flags & FLAG_LZ4 == 0 {
            check(env, napi_get_null(env, &mut out), "napi_get_null")?;
            return Ok(out);
        }
        // The only allocation a frame causes, bounded by `open` (limit and 255x plausibility).
        let mut ptr = null_mut();
        check(
            env,
            napi_create_buffer(env, header.raw_length, &mut ptr, &mut out),
            "napi_create_buffer",
        )?;
        frame::decompress_body(frame, &header, bytes_mut(ptr, header.raw_length))?;
        Ok(out)
    })
}

/// `sdNotify(message: string): boolean`
unsafe extern "C" fn sd_notify(env: napi_env, info: napi_callback_info) -> napi_value {
    run(env, || {
        let [message] = args::<1>(env, info)?;
        if type_of(env, message)? != NAPI_STRING {
            return Err(Fail::new(
                Kind::TypeError,
                CODE_NATIVE,
                "sdNotify: message must be a string",
            ));
        }
        let mut len = 0usize;
        check(
            env,
            napi_get_value_string_utf8(env, message, null_mut(), 0, &mut len),
            "napi_get_value_string_utf8",
        )?;
        let mut buf = vec![0u8; len + 1];
        check(
            env,
            napi_get_value_string_utf8(env, message, buf.as_mut_ptr().cast(), buf.len(), &mut len),
            "napi_get_value_string_utf8",
        )?;
        let sent = notify::sd_notify(&buf[..len])?;
        let mut out = null_mut();
        check(env, napi_get_boolean(env, sent, &mut out), "napi_get_boolean")?;
        Ok(out)
    })
}

/// `crc32c(data: Uint8Array, seed = 0): number` — the frame checksum, exposed for tests and tools.
unsafe extern "C" fn crc32c(env: napi_env, info: napi_callback_info) -> napi_value {
    run(env, || {
        let [data_v, seed_v] = args::<2>(env, info)?;
        let mut data = null_mut();
        let mut len = 0usize;
        let status = napi_get_buffer_info(env, data_v, &mut data, &mut len);
        if status == NAPI_INVALID_ARG {
            return Err(Fail::new(
                Kind::TypeError,
                CODE_NATIVE,
                "crc32c: data must be a Uint8Array",
            ));
        }
        check(env, status, "napi_get_buffer_info")?;
        let seed = match type_of(env, seed_v)? {
            NAPI_UNDEFINED => 0u32,
            _ => {
                let mut s = 0u32;
                check(env, napi_get_value_uint32(env, seed_v, &mut s), "napi_get_value_uint32")
                    .map_err(|_| Fail::new(Kind::TypeError, CODE_NATIVE, "crc32c: seed must be a number"))?;
                s
            }
        };
        let mut out = null_mut();
        check(
            env,
            napi_create_uint32(env, crc32c_update(seed, bytes(data, len)), &mut out),
            "napi_create_uint32",
        )?;
        Ok(out)
    })
}

unsafe fn export_function(
    env: napi_env,
    exports: napi_value,
    name: *const c_char,
    cb: unsafe extern "C" fn(napi_env, napi_callback_info) -> napi_value,
) {
    let mut f = null_mut();
    if napi_create_function(
        env,
        name,
        usize::MAX, /* NAPI_AUTO_LENGTH */
        Some(cb),
        null_mut(),
        &mut f,
    ) == NAPI_OK
    {
        napi_set_named_property(env, exports, name, f);
    }
}

/// `reapExited(pid: number): number` — 1 collected, 0 still running, -1 not a child (native/src/wait.rs).
unsafe extern "C" fn reap_exited(env: napi_env, info: napi_callback_info) -> napi_value {
    run(env, || {
        let [pid] = args::<1>(env, info)?;
        if type_of(env, pid)? != NAPI_NUMBER {
            return Err(Fail::new(
                Kind::TypeError,
                CODE_NATIVE,
                "reapExited: pid must be a number",
            ));
        }
        let mut value = 0u32;
        check(
            env,
            napi_get_value_uint32(env, pid, &mut value),
            "napi_get_value_uint32",
        )?;
        let state = if value == 0 || value > i32::MAX as u32 {
            -1
        } else {
            wait::reap_exited(value as i32)
        };
        let mut out = null_mut();
        check(env, napi_create_int32(env, state, &mut out), "napi_create_int32")?;
        Ok(out)
    })
}

/// Module entry point (Node-API's `NAPI_MODULE_INIT` symbol), called once per JS context that loads
/// the addon (main thread and each worker thread). The addon keeps no per-context state.
#[no_mangle]
pub unsafe extern "C" fn napi_register_module_v1(env: napi_env, exports: napi_value) -> napi_value {
    export_function(env, exports, cstr!("encodeFrame"), encode_frame);
    export_function(env, exports, cstr!("decodeFrame"), decode_frame);
    export_function(env, exports, cstr!("sealFrame"), seal_frame);
    export_function(env, exports, cstr!("openFrame"), open_frame);
    export_function(env, exports, cstr!("sdNotify"), sd_notify);
    export_function(env, exports, cstr!("crc32c"), crc32c);
    export_function(env, exports, cstr!("reapExited"), reap_exited);
    napi_set_named_property(env, exports, cstr!("lz4Version"), js_string(env, &lz4::version()));
    napi_set_named_property(env, exports, cstr!("crc32cImpl"), js_string(env, implementation()));
    exports
}

/// The Node-API version this addon is written against (8: Node >= 12.22 / 14.17 / 15.12 / 16).
#[no_mangle]
pub extern "C" fn node_api_module_get_api_version_v1() -> i32 {
    8
}
