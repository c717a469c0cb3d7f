// The server's one mapping from failures to HTTP: every error a route can produce becomes an
// ApiError (status, OpenAI error type, message, offending parameter, code) and is rendered in
// OpenAI's shape {"error": {"message", "type", "param", "code"}}. flashmoe::Error kinds map to
// statuses here and nowhere else (BadInput 400, OutOfMemory 503, BadModel / Io / Internal 500).
//
// Value types; thread-safe; to_api_error never throws (except std::bad_alloc).
#pragma once

#include <nlohmann/json.hpp>

#include <exception>
#include <stdexcept>
#include <string>

namespace flashmoe::server {

class ApiError : public std::runtime_error {
public:
    ApiError(int status, std::string type, std::string message, std::string param = {}, std::string code = {})
        : std::runtime_error(message), status_(status), type_(std::move(type)), param_(std::move(param)),
          code_(std::move(code)) {}

    int status() const { return status_; }
    const std::string& type() const { return type_; }
    const std::string& param() const { return param_; }
    const std::string& code() const { return code_; }

    // {"error": {...}} with null for an empty param or code.
    nlohmann::ordered_json to_json() const;

    static ApiError bad_request(std::string message, std::string param = {});
    static ApiError unauthorized();
    static ApiError not_found(const std::string& method, const std::string& path);
    static ApiError too_large(size_t limit_bytes);
    static ApiError overloaded(std::string message);

private:
    int status_;
    std::string type_, param_, code_;
};

// Any exception (ApiError, flashmoe::Error, nlohmann's, std::bad_alloc, ...) as an ApiError.
ApiError to_api_error(std::exception_ptr error);

// The error for a response status that carries no body of its own (404 from routing, 413, ...).
ApiError error_for_status(int status, const std::string& method, const std::string& path, size_t body_limit);

}  // namespace flashmoe::server
