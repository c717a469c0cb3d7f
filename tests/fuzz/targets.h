// The bodies of flashmoe's fuzz targets, shared by the libFuzzer binaries (fuzz/) and the regression
// test that replays the committed corpora (tests/fuzz/test_corpora.cpp). Each takes arbitrary bytes
// and must neither crash nor leak: flashmoe::Error for bad input is the expected outcome.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace flashmoe::fuzz {

void safetensors_header(const uint8_t* data, size_t size);
void model_config(const uint8_t* data, size_t size);    // config.json and packed model.json parsing
void tokenizer_encode(const uint8_t* data, size_t size);
void tokenizer_decode(const uint8_t* data, size_t size);  // bytes read as little-endian int32 ids
void jinja_template(const uint8_t* data, size_t size);    // parse, then render a small conversation
// A request body through the server's parsing and validation for both endpoints (no HTTP, no model):
// only an ApiError with a 4xx status may come out, as the server would answer it.
void http_request_body(const uint8_t* data, size_t size);

// Where the targets find their fixed inputs (the Qwen3 tokenizer); set before the first call.
void set_source_dir(const std::string& dir);

}  // namespace flashmoe::fuzz
