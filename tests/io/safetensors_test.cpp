#include "io/safetensors.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "common/bf16.h"
#include "common/files.h"
#include "io_test_util.h"
#include "test_paths.h"

namespace swiftkv::io {
namespace {

using nlohmann::json;
using testing::expect_error;
using testing::write_raw_safetensors;

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Safetensors, RoundTripF32Bf16F16) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_st_roundtrip");
  std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 0.0f, 1e-3f, -7.0f};
  std::vector<bf16_t> bf16 = {f32_to_bf16(0.5f), f32_to_bf16(-1.0f), f32_to_bf16(3.140625f)};
  std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x3555, 0x0001};  // 1, -2, ~1/3, smallest subnormal
  float scalar = 42.0f;
  write_safetensors(dir / "model.safetensors",
                    {{"a.weight", DType::F32, {2, 3}, f32.data()},
                     {"b", DType::BF16, {3}, bf16.data()},
                     {"c", DType::F16, {2, 2}, f16.data()},
                     {"scalar", DType::F32, {}, &scalar},
                     {"empty", DType::BF16, {0, 4}, nullptr}},
                    {{"format", "pt"}, {"note", "test"}});

  std::string bytes = read_bytes(dir / "model.safetensors");
  uint64_t header_length;
  std::memcpy(&header_length, bytes.data(), 8);
  EXPECT_EQ((8 + header_length) % 8, 0u) << "data section must start 8-byte aligned";
  EXPECT_NO_THROW(json::parse(bytes.substr(8, header_length)));  // trailing spaces are valid JSON

  TensorStore store = TensorStore::open(dir);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a.weight", "b", "c", "empty", "scalar"}));
  EXPECT_EQ(store.metadata().at("format"), "pt");
  EXPECT_EQ(store.metadata().at("note"), "test");
  const TensorInfo& a = store.at("a.weight");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.nbytes, 24u);
  EXPECT_EQ(a.file, dir / "model.safetensors");
  EXPECT_EQ(std::memcmp(a.data, f32.data(), 24), 0);
  EXPECT_EQ(store.read_f32("a.weight"), f32);
  EXPECT_EQ(store.read_f32("b"), (std::vector<float>{0.5f, -1.0f, 3.140625f}));
  std::vector<float> c = store.read_f32("c");
  EXPECT_EQ(c[0], 1.0f);
  EXPECT_EQ(c[1], -2.0f);
  EXPECT_NEAR(c[2], 1.0f / 3.0f, 1e-3);
  EXPECT_EQ(c[3], std::ldexp(1.0f, -24));
  EXPECT_EQ(store.read_f32("scalar"), std::vector<float>{42.0f});
  EXPECT_EQ(store.at("empty").numel(), 0);
  EXPECT_TRUE(store.contains("b"));
  EXPECT_FALSE(store.contains("d"));
  expect_error([&] { store.at("d"); }, {"tensor d is not in the checkpoint", "model.safetensors"});

  // release() only drops pages: the data reads back the same afterwards.
  store.release("a.weight");
  EXPECT_EQ(store.read_f32("a.weight"), f32);
}

TEST(Safetensors, StreamingWriterChecksByteCountsAndLeavesNoFileOnError) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_st_stream");
  std::vector<TensorSpec> specs = {{"x", DType::F32, {4}}, {"y", DType::BF16, {2, 2}}};
  write_safetensors_streaming(dir / "model.safetensors", specs, [](size_t index, const EmitBytes& emit) {
    if (index == 0) {
      float values[4] = {1, 2, 3, 4};
      emit(values, 8);  // in two pieces
      emit(values + 2, 8);
    } else {
      std::vector<bf16_t> values(4, f32_to_bf16(2.0f));
      emit(values.data(), 8);
    }
  });
  TensorStore store = TensorStore::open(dir);
  EXPECT_EQ(store.read_f32("x"), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(store.read_f32("y"), std::vector<float>(4, 2.0f));

  auto short_dir = swiftkv::testing::fresh_temp_dir("io_st_stream_short");
  expect_error(
      [&] {
        write_safetensors_streaming(short_dir / "model.safetensors", specs,
                                    [](size_t, const EmitBytes& emit) {
                                      float value = 1;
                                      emit(&value, 4);
                                    });
      },
      {"4 bytes given for tensor x, its shape needs 16"});
  EXPECT_TRUE(std::filesystem::is_empty(short_dir));
  expect_error(
      [&] {
        float values[2] = {1, 2};
        write_safetensors(short_dir / "model.safetensors",
                          {{"x", DType::F32, {1}, values}, {"x", DType::F32, {1}, values + 1}});
      },
      {"tensor name \"x\" is empty or repeated"});
}

// Two shards and an index, as Hugging Face writes large models.
void write_sharded(const std::filesystem::path& dir) {
  std::vector<float> first = {1, 2, 3, 4}, second = {5, 6};
  write_safetensors(dir / "model-00001-of-00002.safetensors",
                    {{"layer.0", DType::F32, {2, 2}, first.data()}});
  write_safetensors(dir / "model-00002-of-00002.safetensors", {{"layer.1", DType::F32, {2}, second.data()}});
  write_json_file(
      dir / "model.safetensors.index.json",
      {{"metadata", {{"total_size", 24}}},
       {"weight_map",
        {{"layer.0", "model-00001-of-00002.safetensors"}, {"layer.1", "model-00002-of-00002.safetensors"}}}});
}

TEST(Safetensors, ShardedIndex) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_st_sharded");
  write_sharded(dir);
  TensorStore store = TensorStore::open(dir);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"layer.0", "layer.1"}));
  EXPECT_EQ(store.read_f32("layer.0"), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(store.read_f32("layer.1"), (std::vector<float>{5, 6}));
  EXPECT_EQ(store.at("layer.1").file, dir / "model-00002-of-00002.safetensors");
  EXPECT_EQ(store.directory(), dir);
}

TEST(Safetensors, MissingShardIsNamed) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_st_missing_shard");
  write_sharded(dir);
  std::filesystem::remove(dir / "model-00002-of-00002.safetensors");
  expect_error([&] { TensorStore::open(dir); },
               {"shard " + (dir / "model-00002-of-00002.safetensors").string() + " is missing",
                "model.safetensors.index.json", "layer.1"});
}

TEST(Safetensors, IndexThatLiesAboutAShardIsNamed) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_st_lying_index");
  write_sharded(dir);
  json index = read_json_file(dir / "model.safetensors.index.json");
  index["weight_map"]["layer.1"] = "model-00001-of-00002.safetensors";
  write_json_file(dir / "model.safetensors.index.json", index);
  expect_error([&] { TensorStore::open(dir); },
               {"puts tensor layer.1 in", "model-00001-of-00002.safetensors", "does not contain it"});
  index["weight_map"]["layer.1"] = "../elsewhere.safetensors";
  write_json_file(dir / "model.safetensors.index.json", index);
  expect_error([&] { TensorStore::open(dir); }, {"is not a file name in the model directory"});
  std::ofstream(dir / "model.safetensors.index.json") << "{\"weight_map\": {";
  expect_error([&] { TensorStore::open(dir); }, {"model.safetensors.index.json", "is not valid JSON"});
}

TEST(Safetensors, TensorInTwoShardsIsNamed) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_st_duplicate");
  write_sharded(dir);
  float value = 0;
  write_safetensors(dir / "model-00002-of-00002.safetensors",
                    {{"layer.0", DType::F32, {1}, &value}, {"layer.1", DType::F32, {2}, &value}});
  expect_error([&] { TensorStore::open(dir); }, {"tensor layer.0 appears in both", "model-00001-of-00002"});
}

TEST(Safetensors, NoWeightsInDirectory) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_st_empty");
  expect_error([&] { TensorStore::open(dir); },
               {"no model.safetensors or model.safetensors.index.json in " + dir.string()});
}

struct BadFile {
  std::string what;
  std::string header;
  std::string data;
  std::vector<std::string> fragments;
};

TEST(Safetensors, BadFilesGiveSpecificErrorsNamingFileAndTensor) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_st_bad");
  const std::string file = (dir / "model.safetensors").string();
  const std::string data16(16, '\0');
  std::vector<BadFile> cases = {
      {"truncated data",
       R"({"w":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]}})",
       data16,
       {"tensor w in " + file, "data_offsets [0, 32] beyond the data section (16 bytes)", "truncated"}},
      {"offsets outside data",
       R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[100,104]}})",
       data16,
       {"tensor w in " + file, "[100, 104] beyond the data section"}},
      {"size mismatch",
       R"({"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,16]}})",
       data16,
       {"tensor w in " + file,
        "data_offsets [0, 16] (16 bytes), but dtype BF16 and shape [2, 3] need 12 bytes"}},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       data16,
       {"tensors a [0, 8] and b [4, 12] in " + file + " overlap"}},
      {"begin after end",
       R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})",
       data16,
       {"tensor w in " + file, "begin > end"}},
      {"unknown dtype",
       R"({"w":{"dtype":"F8_E4M3","shape":[16],"data_offsets":[0,16]}})",
       data16,
       {"tensor w in " + file + " has dtype F8_E4M3, supported: F32, BF16, F16"}},
      {"integer dtype",
       R"({"w":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})",
       data16,
       {"tensor w in " + file + " has dtype I64"}},
      {"negative shape",
       R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})",
       data16,
       {"tensor w in " + file, "invalid shape [-4]"}},
      {"missing offsets",
       R"({"w":{"dtype":"F32","shape":[4]}})",
       data16,
       {"tensor w in " + file, "malformed header entry"}},
      {"broken json header",
       R"({"w":{"dtype":"F32","shape":[4],)",
       data16,
       {file + ": safetensors header is not valid JSON"}},
      {"header not an object", R"([1, 2, 3])", data16, {file + ": safetensors header is not a JSON object"}},
  };
  for (const BadFile& bad : cases) {
    SCOPED_TRACE(bad.what);
    write_raw_safetensors(dir / "model.safetensors", bad.header, bad.data);
    expect_error([&] { TensorStore::open(dir); }, bad.fragments);
  }
}

TEST(Safetensors, TruncatedOrLyingLengthIsNamed) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_st_length");
  const std::string file = (dir / "model.safetensors").string();
  std::ofstream(dir / "model.safetensors", std::ios::binary) << "abc";
  expect_error([&] { TensorStore::open(dir); }, {file + " is truncated: 3 bytes"});

  // A header length far beyond the file (e.g. a file cut inside its header).
  write_raw_safetensors(dir / "model.safetensors",
                        R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "");
  std::string bytes = read_bytes(dir / "model.safetensors");
  std::ofstream(dir / "model.safetensors", std::ios::binary | std::ios::trunc) << bytes.substr(0, 20);
  expect_error([&] { TensorStore::open(dir); },
               {file + ": header length 54 runs past the end of the file (20 bytes)", "truncated"});

  std::string huge(8, '\xff');
  std::ofstream(dir / "model.safetensors", std::ios::binary | std::ios::trunc) << huge << "{}";
  expect_error([&] { TensorStore::open(dir); },
               {file + ": header length 18446744073709551615 runs past the end"});

  // A real file cut short in its data section.
  float values[8] = {};
  write_safetensors(dir / "model.safetensors", {{"model.norm.weight", DType::F32, {8}, values}});
  bytes = read_bytes(dir / "model.safetensors");
  std::ofstream(dir / "model.safetensors", std::ios::binary | std::ios::trunc)
      << bytes.substr(0, bytes.size() - 5);
  expect_error([&] { TensorStore::open(dir); }, {"tensor model.norm.weight in " + file, "truncated"});
}

}  // namespace
}  // namespace swiftkv::io

namespace swiftkv::io {
namespace {

// "Never a crash": any truncation of a valid file, and any single corrupted header byte,
// either opens (when the change is harmless) or throws swiftkv::Error, nothing else.
TEST(Safetensors, CorruptedFilesNeverCrash) {
  auto dir = swiftkv::testing::fresh_temp_dir("io_st_fuzz");
  std::vector<float> a(6, 1.0f), b(3, 2.0f);
  write_safetensors(dir / "model.safetensors",
                    {{"a", DType::F32, {2, 3}, a.data()}, {"b", DType::F32, {3}, b.data()}});
  const std::string good = read_bytes(dir / "model.safetensors");
  auto open_must_not_crash = [&](const std::string& what) {
    try {
      TensorStore store = TensorStore::open(dir);
      for (const std::string& name : store.names()) store.read_f32(name);
    } catch (const Error&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": non-swiftkv exception " << e.what();
    }
  };
  // Files are removed and recreated, never truncated in place: ext4 flushes a file truncated
  // and rewritten, which made this test take seconds.
  for (size_t length = 0; length < good.size(); ++length) {
    std::filesystem::remove(dir / "model.safetensors");
    std::ofstream(dir / "model.safetensors", std::ios::binary) << good.substr(0, length);
    open_must_not_crash("truncated to " + std::to_string(length));
  }
  std::filesystem::remove(dir / "model.safetensors");
  std::ofstream(dir / "model.safetensors", std::ios::binary) << good;
  int fd = ::open((dir / "model.safetensors").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  uint64_t header_length;
  std::memcpy(&header_length, good.data(), 8);
  for (size_t position = 0; position < 8 + header_length; ++position) {
    for (char replacement : {'\0', '\xff', '{', '"', ']', '9', '-', ' '}) {
      ASSERT_EQ(::pwrite(fd, &replacement, 1, static_cast<off_t>(position)), 1);
      open_must_not_crash("byte " + std::to_string(position) + " = " + std::to_string(replacement));
    }
    ASSERT_EQ(::pwrite(fd, &good[position], 1, static_cast<off_t>(position)), 1);
  }
  ::close(fd);
}

}  // namespace
}  // namespace swiftkv::io
