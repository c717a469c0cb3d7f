#include "store/safetensors.h"

#include "util/error.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>

namespace flashmoe {

namespace fs = std::filesystem;
using nlohmann::json;

int64_t TensorRef::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

std::string TensorRef::shape_string() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

std::vector<TensorRef> parse_safetensors(const uint8_t* data, size_t size, const std::string& path) {
    if (size < 8) fail(ErrorKind::BadModel, "{}: file is {} bytes, too short for a safetensors header", path, size);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
    if (header_len > size - 8) {
        fail(ErrorKind::BadModel, "{}: header claims {} bytes but the file has {} (truncated?)", path, header_len,
             size);
    }
    json header;
    try {
        header = json::parse(data + 8, data + 8 + header_len);
    } catch (const json::exception& e) {
        fail(ErrorKind::BadModel, "{}: header is not valid JSON: {}", path, e.what());
    }
    if (!header.is_object()) fail(ErrorKind::BadModel, "{}: header is not a JSON object", path);

    const uint8_t* base = data + 8 + header_len;
    const uint64_t data_size = size - 8 - header_len;
    std::vector<TensorRef> out;
    for (auto& item : header.items()) {
        const std::string& name = item.key();
        const json& entry = item.value();
        if (name == "__metadata__") continue;
        auto bad = [&](const std::string& what) {
            fail(ErrorKind::BadModel, "{}: tensor {}: {}", path, name, what);
        };
        if (!entry.is_object()) bad("entry is not an object");
        auto dt = entry.find("dtype");
        auto sh = entry.find("shape");
        auto off = entry.find("data_offsets");
        if (dt == entry.end() || !dt->is_string()) bad("missing string field 'dtype'");
        if (sh == entry.end() || !sh->is_array()) bad("missing array field 'shape'");
        if (off == entry.end() || !off->is_array() || off->size() != 2) bad("'data_offsets' must be [begin, end]");

        TensorRef t;
        t.name = name;
        if (!parse_safetensors_dtype(dt->get<std::string>(), &t.dtype)) {
            bad(fmt::format("unsupported dtype '{}'", dt->get<std::string>()));
        }
        uint64_t numel = 1;
        for (auto& d : *sh) {
            if (!d.is_number_unsigned()) bad("shape entries must be non-negative integers");
            uint64_t v = d.get<uint64_t>();
            if (v > 0 && numel > std::numeric_limits<uint64_t>::max() / v / 8) bad("shape is too large");
            numel *= v;
            t.shape.push_back(int64_t(v));
        }
        for (auto& o : *off) {
            if (!o.is_number_unsigned()) bad("data_offsets must be non-negative integers");
        }
        uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
        if (begin > end || end > data_size) {
            bad(fmt::format("data [{}, {}) lies outside the {} data bytes of the file (truncated?)", begin, end,
                            data_size));
        }
        if (end - begin != numel * dtype_size(t.dtype)) {
            bad(fmt::format("holds {} bytes but {} {} needs {}", end - begin, dtype_name(t.dtype), t.shape_string(),
                            numel * dtype_size(t.dtype)));
        }
        t.data = base + begin;
        t.bytes = size_t(end - begin);
        out.push_back(std::move(t));
    }
    return out;
}

void SafetensorsSet::add_file(const std::string& path) {
    auto map = std::make_unique<MappedFile>(MappedFile::open_or_throw(path));
    paths_.push_back(path);
    const std::string* file_name = &paths_.back();
    for (auto& t : parse_safetensors(map->data(), map->size(), path)) {
        std::string name = t.name;
        if (tensors_.count(name)) fail(ErrorKind::BadModel, "{}: tensor {} appears in two files", path, name);
        t.file = file_name;
        tensors_.emplace(name, std::move(t));
    }
    maps_.push_back(std::move(map));
}

SafetensorsSet SafetensorsSet::open_file(const std::string& path) {
    SafetensorsSet set;
    set.paths_.reserve(1);
    set.add_file(path);
    return set;
}

SafetensorsSet SafetensorsSet::open_dir(const std::string& dir) {
    std::vector<std::string> files;
    fs::path index = fs::path(dir) / "model.safetensors.index.json";
    fs::path single = fs::path(dir) / "model.safetensors";
    if (fs::exists(index)) {
        json j;
        try {
            j = json::parse(read_text_file(index.string()));
        } catch (const json::exception& e) {
            fail(ErrorKind::BadModel, "{}: not valid JSON: {}", index.string(), e.what());
        }
        auto wm = j.find("weight_map");
        if (wm == j.end() || !wm->is_object()) {
            fail(ErrorKind::BadModel, "{}: missing object 'weight_map'", index.string());
        }
        std::set<std::string> shard_names;
        for (auto& [tensor, shard] : wm->items()) {
            if (!shard.is_string()) fail(ErrorKind::BadModel, "{}: weight_map[{}] is not a file name", index.string(), tensor);
            shard_names.insert(shard.get<std::string>());
        }
        for (auto& s : shard_names) {
            if (s.find('/') != std::string::npos || s == "..") {
                fail(ErrorKind::BadModel, "{}: shard name '{}' must be a plain file name", index.string(), s);
            }
            files.push_back((fs::path(dir) / s).string());
        }
    } else if (fs::exists(single)) {
        files.push_back(single.string());
    } else {
        std::error_code ec;
        for (auto& e : fs::directory_iterator(dir, ec)) {
            if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
        }
        if (ec) fail(ErrorKind::Io, "cannot list {}: {}", dir, ec.message());
        std::sort(files.begin(), files.end());
        if (files.empty()) fail(ErrorKind::BadModel, "{}: no model.safetensors, index or *.safetensors file", dir);
    }
    SafetensorsSet set;
    set.paths_.reserve(files.size());  // TensorRef::file points into paths_
    for (auto& f : files) set.add_file(f);
    if (fs::exists(index)) {
        json j = json::parse(read_text_file(index.string()));
        for (auto& [tensor, shard] : j["weight_map"].items()) {
            if (!set.find(tensor)) {
                fail(ErrorKind::BadModel, "{}: tensor {} is listed for {} but that file does not hold it",
                     index.string(), tensor, shard.get<std::string>());
            }
        }
    }
    return set;
}

const TensorRef* SafetensorsSet::find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

const TensorRef& SafetensorsSet::get(const std::string& name) const {
    const TensorRef* t = find(name);
    if (!t) {
        fail(ErrorKind::BadModel, "tensor {} not found in {}", name,
             paths_.empty() ? std::string("(no files)") : paths_.front());
    }
    return *t;
}

}  // namespace flashmoe
