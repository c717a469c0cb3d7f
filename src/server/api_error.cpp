#include "server/api_error.h"

#include "util/error.h"

#include <fmt/format.h>

#include <new>

namespace flashmoe::server {

nlohmann::ordered_json ApiError::to_json() const {
    auto opt = [](const std::string& s) { return s.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s); };
    return {{"error", {{"message", what()}, {"type", type_}, {"param", opt(param_)}, {"code", opt(code_)}}}};
}

ApiError ApiError::bad_request(std::string message, std::string param) {
    return ApiError(400, "invalid_request_error", std::move(message), std::move(param));
}

ApiError ApiError::unauthorized() {
    return ApiError(401, "invalid_request_error", "Incorrect API key provided.", {}, "invalid_api_key");
}

ApiError ApiError::not_found(const std::string& method, const std::string& path) {
    return ApiError(404, "invalid_request_error", fmt::format("Invalid URL ({} {})", method, path), {}, "not_found");
}

ApiError ApiError::too_large(size_t limit_bytes) {
    return ApiError(413, "invalid_request_error",
                    fmt::format("Request body too large: the limit is {} bytes (--max-body)", limit_bytes), {},
                    "request_too_large");
}

ApiError ApiError::overloaded(std::string message) {
    return ApiError(503, "server_error", std::move(message), {}, "overloaded");
}

ApiError to_api_error(std::exception_ptr error) {
    try {
        std::rethrow_exception(error);
    } catch (const ApiError& e) {
        return e;
    } catch (const Error& e) {
        switch (e.kind()) {
            case ErrorKind::BadInput: return ApiError::bad_request(e.what());
            case ErrorKind::OutOfMemory: return ApiError(503, "server_error", e.what(), {}, "out_of_memory");
            case ErrorKind::BadModel:
            case ErrorKind::Io:
            case ErrorKind::Internal: break;
        }
        return ApiError(500, "server_error", fmt::format("{}: {}", error_kind_name(e.kind()), e.what()), {},
                        "internal_error");
    } catch (const nlohmann::json::exception& e) {
        return ApiError::bad_request(fmt::format("invalid JSON: {}", e.what()));
    } catch (const std::bad_alloc&) {
        return ApiError(503, "server_error", "out of memory", {}, "out_of_memory");
    } catch (const std::exception& e) {
        return ApiError(500, "server_error", fmt::format("internal error: {}", e.what()), {}, "internal_error");
    } catch (...) {
        return ApiError(500, "server_error", "internal error", {}, "internal_error");
    }
}

ApiError error_for_status(int status, const std::string& method, const std::string& path, size_t body_limit) {
    switch (status) {
        case 400: return ApiError::bad_request("malformed HTTP request");
        case 401: return ApiError::unauthorized();
        case 404: return ApiError::not_found(method, path);
        case 405: return ApiError(405, "invalid_request_error", fmt::format("Method {} not allowed on {}", method, path));
        case 413: return ApiError::too_large(body_limit);
        case 415: return ApiError(415, "invalid_request_error", "unsupported content encoding");
        default: break;
    }
    if (status >= 500) return ApiError(status, "server_error", fmt::format("HTTP {}", status));
    return ApiError(status, "invalid_request_error", fmt::format("HTTP {}", status));
}

}  // namespace flashmoe::server
