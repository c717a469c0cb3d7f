#include "store/packed_writer.h"

#include "util/error.h"
#include "util/mapped_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace flashmoe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kDenseAlignment = 64;

void write_all(int fd, const void* data, size_t bytes, uint64_t offset, const std::string& path) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (bytes > 0) {
        ssize_t n = ::pwrite(fd, p, bytes, off_t(offset));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail(ErrorKind::Io, "cannot write {}: {}", path, std::strerror(errno));
        p += n;
        bytes -= size_t(n);
        offset += uint64_t(n);
    }
}

int create_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail(ErrorKind::Io, "cannot create {}: {}", path, std::strerror(errno));
    return fd;
}

std::string safetensors_dtype(DType d) {
    switch (d) {
        case DType::F32: return "F32";
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
        case DType::U32: return "U32";
        case DType::I32: return "I32";
        case DType::U8: return "U8";
        default: fail(ErrorKind::Internal, "dtype {} is not written to packed models", dtype_name(d));
    }
}

}  // namespace

size_t DenseTensorSpec::bytes() const {
    size_t n = dtype_size(dtype);
    for (int64_t d : shape) n *= size_t(d);
    return n;
}

PackedWriter::PackedWriter(std::string out_dir, bool overwrite) : out_dir_(std::move(out_dir)), overwrite_(overwrite) {
    while (out_dir_.size() > 1 && out_dir_.back() == '/') out_dir_.pop_back();
    if (fs::exists(out_dir_) && !overwrite_) {
        fail(ErrorKind::BadInput, "{} already exists (pass --force to replace it)", out_dir_);
    }
    tmp_dir_ = out_dir_ + ".partial-" + std::to_string(::getpid());
    std::error_code ec;
    fs::remove_all(tmp_dir_, ec);
    fs::create_directories(fs::path(tmp_dir_) / "experts", ec);
    if (ec) fail(ErrorKind::Io, "cannot create {}: {}", tmp_dir_, ec.message());
}

PackedWriter::~PackedWriter() {
    if (dense_fd_ >= 0) ::close(dense_fd_);
    for (int fd : expert_fds_)
        if (fd >= 0) ::close(fd);
    if (!finished_) {
        std::error_code ec;
        fs::remove_all(tmp_dir_, ec);
    }
}

void PackedWriter::declare_dense(const std::vector<DenseTensorSpec>& specs) {
    dense_specs_ = specs;
    json header = json::object();
    uint64_t offset = 0;
    int pads = 0;
    for (auto& s : specs) {
        // safetensors wants the data contiguous: alignment gaps become small u8 padding tensors.
        uint64_t aligned = (offset + kDenseAlignment - 1) / kDenseAlignment * kDenseAlignment;
        if (aligned != offset) {
            header[fmt::format("__pad.{}", pads++)] = {
                {"dtype", "U8"}, {"shape", {aligned - offset}}, {"data_offsets", {offset, aligned}}};
            offset = aligned;
        }
        dense_offsets_.push_back(offset);
        header[s.name] = {{"dtype", safetensors_dtype(s.dtype)}, {"shape", s.shape}, {"data_offsets", {offset, offset + s.bytes()}}};
        offset += s.bytes();
    }
    header["__metadata__"] = {{"format", "flashmoe"}};
    std::string text = header.dump();
    // Pad so that the data section starts 64-byte aligned in the file.
    size_t total = 8 + text.size();
    text.append((kDenseAlignment - total % kDenseAlignment) % kDenseAlignment, ' ');
    std::string path = tmp_dir_ + "/dense.safetensors";
    dense_fd_ = create_file(path);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t((uint64_t(text.size()) >> (8 * i)) & 0xff);
    write_all(dense_fd_, len, 8, 0, path);
    write_all(dense_fd_, text.data(), text.size(), 8, path);
    dense_data_start_ = 8 + text.size();
    if (::ftruncate(dense_fd_, off_t(dense_data_start_ + offset)) != 0) {
        fail(ErrorKind::Io, "cannot size {}: {}", path, std::strerror(errno));
    }
}

void PackedWriter::write_dense(const std::string& name, const void* data, size_t bytes) {
    if (dense_next_ >= dense_specs_.size() || dense_specs_[dense_next_].name != name) {
        fail(ErrorKind::Internal, "dense tensor {} written out of its declared order", name);
    }
    if (bytes != dense_specs_[dense_next_].bytes()) {
        fail(ErrorKind::Internal, "dense tensor {}: {} bytes written, {} declared", name, bytes,
             dense_specs_[dense_next_].bytes());
    }
    write_all(dense_fd_, data, bytes, dense_data_start_ + dense_offsets_[dense_next_], tmp_dir_ + "/dense.safetensors");
    bytes_written_ += bytes;
    ++dense_next_;
}

void PackedWriter::set_experts(int64_t num_layers, int64_t num_experts, const ExpertRecordLayout& layout) {
    layout_ = layout;
    num_experts_ = num_experts;
    for (int64_t l = 0; l < num_layers; ++l) {
        std::string path = tmp_dir_ + "/" + expert_file_name(l);
        int fd = create_file(path);
        expert_fds_.push_back(fd);
        if (::ftruncate(fd, off_t(uint64_t(num_experts) * layout.record_stride)) != 0) {
            fail(ErrorKind::Io, "cannot size {}: {}", path, std::strerror(errno));
        }
    }
}

void PackedWriter::write_expert(int64_t layer, int64_t expert, const uint8_t* record) {
    if (layer < 0 || size_t(layer) >= expert_fds_.size() || expert < 0 || expert >= num_experts_) {
        fail(ErrorKind::Internal, "expert ({}, {}) is outside the declared files", layer, expert);
    }
    write_all(expert_fds_[size_t(layer)], record, layout_.record_bytes, uint64_t(expert) * layout_.record_stride,
              tmp_dir_ + "/" + expert_file_name(layer));
    bytes_written_ += layout_.record_bytes;
}

void PackedWriter::copy_file(const std::string& source_path, const std::string& name) {
    std::error_code ec;
    fs::copy_file(source_path, fs::path(tmp_dir_) / name, fs::copy_options::overwrite_existing, ec);
    if (ec) fail(ErrorKind::Io, "cannot copy {} into the packed model: {}", source_path, ec.message());
    side_files_.push_back(name);
}

void PackedWriter::finish(const ModelConfig& config, const json& info) {
    if (dense_next_ != dense_specs_.size()) {
        fail(ErrorKind::Internal, "{} of {} dense tensors were written", dense_next_, dense_specs_.size());
    }
    json manifest = {{"magic", kPackedMagic},
                     {"version", kPackedVersion},
                     {"config", config.to_json()},
                     {"dense", "dense.safetensors"},
                     {"experts", {{"num_layers", expert_fds_.size()}, {"num_experts", num_experts_}, {"layout", layout_.to_json()}}},
                     {"files", side_files_},
                     {"info", info}};
    for (int fd : expert_fds_) {
        if (::fsync(fd) != 0) fail(ErrorKind::Io, "cannot flush expert files: {}", std::strerror(errno));
        ::close(fd);
    }
    expert_fds_.clear();
    if (dense_fd_ >= 0) {
        if (::fsync(dense_fd_) != 0) fail(ErrorKind::Io, "cannot flush dense.safetensors: {}", std::strerror(errno));
        ::close(dense_fd_);
        dense_fd_ = -1;
    }
    // model.json is written last: a directory without it is never taken for a model.
    std::string path = tmp_dir_ + "/model.json";
    int fd = create_file(path);
    std::string text = manifest.dump(2);
    write_all(fd, text.data(), text.size(), 0, path);
    ::fsync(fd);
    ::close(fd);
    std::error_code ec;
    if (fs::exists(out_dir_)) fs::remove_all(out_dir_, ec);
    if (ec) fail(ErrorKind::Io, "cannot replace {}: {}", out_dir_, ec.message());
    fs::rename(tmp_dir_, out_dir_, ec);
    if (ec) fail(ErrorKind::Io, "cannot rename {} to {}: {}", tmp_dir_, out_dir_, ec.message());
    finished_ = true;
}

bool is_packed_model(const std::string& dir) { return fs::exists(fs::path(dir) / "model.json"); }

json read_packed_manifest(const std::string& dir) {
    std::string path = (fs::path(dir) / "model.json").string();
    json j;
    try {
        j = json::parse(read_text_file(path));
    } catch (const json::exception& e) {
        fail(ErrorKind::BadModel, "{}: not valid JSON: {}", path, e.what());
    }
    if (!j.is_object() || j.value("magic", "") != kPackedMagic) {
        fail(ErrorKind::BadModel, "{}: not a flashmoe packed model (magic '{}')", path, kPackedMagic);
    }
    if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != kPackedVersion) {
        fail(ErrorKind::BadModel, "{}: packed format version {} is not supported (this flashmoe reads version {}); convert the model again",
             path, j.contains("version") ? j["version"].dump() : std::string("(none)"), kPackedVersion);
    }
    return j;
}

}  // namespace flashmoe
