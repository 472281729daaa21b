// Recipes: stage options, the registry, parsing, --set overrides and stage-order checks.

#include <yaml-cpp/yaml.h>

#include <gtest/gtest.h>

#include "mcompress/core/error.h"
#include "mcompress/core/stage.h"
#include "mcompress/pipeline/recipe.h"
#include "mcompress/pipeline/registry.h"
#include "test_support.h"

namespace mcompress {
namespace {

const std::vector<OptionDoc> kDocs = {{"target", "0.5", "sparsity in [0, 1)"},
                                      {"rounds", "3", "rounds, >= 1"},
                                      {"method", "magnitude", "magnitude or random"},
                                      {"exclude", "[]", "tensor names"},
                                      {"overrides", "{}", "name: target"},
                                      {"teacher", "", "required"}};

StageOptions options_from(const std::string& yaml) {
  return StageOptions(YAML::Load(yaml), "stages[1].prune", kDocs);
}

TEST(StageOptionsTest, DefaultsAndGivenValues) {
  const auto o = options_from("{target: 0.9, exclude: 0.weight}");
  EXPECT_DOUBLE_EQ(o.number("target", 0, 1, true), 0.9);
  EXPECT_EQ(o.integer("rounds", 1), 3);  // default
  EXPECT_TRUE(o.has("target"));
  EXPECT_FALSE(o.has("rounds"));
  EXPECT_EQ(o.list("exclude"), std::vector<std::string>{"0.weight"});
  EXPECT_TRUE(o.number_map("overrides", 0, 1).empty());
  const auto r = o.resolved();
  EXPECT_DOUBLE_EQ(r.at("target").get<double>(), 0.9);
  EXPECT_EQ(r.at("rounds").get<int64_t>(), 3);
  EXPECT_EQ(r.at("method").get<std::string>(), "magnitude");
  EXPECT_FALSE(r.contains("teacher"));  // required and not given: no value to report
}

// The options of `mcompress prune` and the like: built by the command from its flags, they name
// the flag in errors, and library validation keeps its own message.
TEST(StageOptionsTest, FromFlagsErrorsNameTheFlag) {
  EXPECT_EQ(option_flag("finetune_epochs"), "--finetune-epochs");
  YAML::Node node(YAML::NodeType::Map);
  node["target"] = "1.5";
  node["rounds"] = "2";
  node["overrides"]["0.weight"] = "x";
  const StageOptions o(node, "prune", kDocs, OptionSource::kFlags);
  EXPECT_EQ(o.integer("rounds", 1), 2);  // a flag's text is read as the recipe's scalar
  EXPECT_EQ(o.resolved().at("rounds").get<int64_t>(), 2);
  ASSERT_THROWS_WITH(o.number("target", 0, 1, true), ConfigError,
                     "--target must be in [0, 1), got 1.5");
  ASSERT_THROWS_WITH(o.number_map("overrides", 0, 1), ConfigError,
                     "--overrides '0.weight' must be a number, got 'x'");
  ASSERT_THROWS_WITH(o.text("teacher"), ConfigError, "--teacher: required option missing");
  ASSERT_THROWS_WITH(o.validate([] { throw ConfigError("rounds must be 1 for one-shot"); }),
                     ConfigError, "rounds must be 1 for one-shot");
}

// The prune stage rewinds to none, init or a model file, as `mcompress prune --rewind` does.
TEST(StageOptionsTest, PruneRewindsToAModelFile) {
  const StageInfo& prune = pipeline::default_registry().find("prune");
  auto make = [&](const std::string& yaml) {
    return prune.make(StageOptions(YAML::Load(yaml), "stages[0].prune", prune.options));
  };
  EXPECT_NE(make("{rewind: init}"), nullptr);
  EXPECT_NE(make("{rewind: runs/epoch2.h5}"), nullptr);  // loaded when the stage runs
  ASSERT_THROWS_WITH(make("{rewind: ''}"), ConfigError,
                     "stages[0].prune.rewind (line 1): must be none, init or a model file");
}

TEST(StageOptionsTest, ErrorsNameThePathAndLine) {
  ASSERT_THROWS_WITH(options_from("target: 0.9\ntagret: 0.95"), ConfigError,
                     "stages[1].prune.tagret (line 2): unknown option; options: target, rounds");
  ASSERT_THROWS_WITH(options_from("rounds: 2\ntarget: 1.5").number("target", 0, 1, true),
                     ConfigError, "stages[1].prune.target (line 2): must be in [0, 1), got 1.5");
  ASSERT_THROWS_WITH(options_from("target: lots").number("target", 0, 1, true), ConfigError,
                     "stages[1].prune.target (line 1): must be a number, got 'lots'");
  ASSERT_THROWS_WITH(options_from("rounds: 0").integer("rounds", 1), ConfigError,
                     "stages[1].prune.rounds (line 1): must be >= 1, got 0");
  ASSERT_THROWS_WITH(options_from("rounds: 2.5").integer("rounds", 1), ConfigError,
                     "must be an integer, got '2.5'");
  ASSERT_THROWS_WITH(options_from("method: biggest").choice("method", {"magnitude", "random"}),
                     ConfigError, "must be one of magnitude, random, got 'biggest'");
  ASSERT_THROWS_WITH(options_from("overrides: {0.weight: 1.0}").number_map("overrides", 0, 1),
                     ConfigError, "'0.weight' must be in [0, 1), got 1.0");
  ASSERT_THROWS_WITH(options_from("{}").text("teacher"), ConfigError,
                     "stages[1].prune.teacher (line 1): required option missing");
  ASSERT_THROWS_WITH(options_from("[1, 2]"), ConfigError, "expected a mapping of options");
  // Library validation is re-thrown with the stage's path.
  ASSERT_THROWS_WITH(
      options_from("target: 0.5").validate([] { throw ConfigError("epochs must be >= 1, got 0"); }),
      ConfigError, "stages[1].prune (line 1): epochs must be >= 1, got 0");
}

TEST(StageRegistryTest, FindsRegisteredStagesAndRejectsDuplicates) {
  const auto& registry = pipeline::default_registry();
  ASSERT_TRUE(registry.contains("quantize"));
  EXPECT_FALSE(registry.find("quantize").options.empty());
  ASSERT_THROWS_WITH(registry.find("sharpen"), ConfigError, "unknown stage 'sharpen'; stages: ");
  StageRegistry r;
  StageInfo info{"noop", "does nothing", {}, [](const StageOptions&) -> std::unique_ptr<Stage> {
                   return nullptr;
                 }};
  r.add(info);
  ASSERT_THROWS_WITH(r.add(info), Error, "'noop' is registered twice");
}

const char* kRecipe = R"(model: runs/convnet.h5
data: {val_fraction: 0.2, calib_batches: 4}
seed: 7
stages:
  - quantize: {mode: int8-static, observer: entropy}
guard: {max_accuracy_drop: 1.0}
output: runs/out.h5
)";

TEST(RecipeTest, ParsesEverySection) {
  const auto r = pipeline::parse_recipe(kRecipe, pipeline::default_registry());
  EXPECT_EQ(r.model.path, "runs/convnet.h5");
  EXPECT_DOUBLE_EQ(r.data.val_fraction, 0.2);
  EXPECT_EQ(r.data.calib_batches, 4);
  EXPECT_EQ(r.seed, 7u);
  ASSERT_EQ(r.stages.size(), 1u);
  EXPECT_EQ(r.stages[0].path, "stages[0].quantize");
  EXPECT_EQ(r.stages[0].options.at("observer").get<std::string>(), "entropy");
  EXPECT_DOUBLE_EQ(r.guard.max_accuracy_drop, 1.0);
  EXPECT_FALSE(r.guard.skip);
  EXPECT_EQ(r.output, "runs/out.h5");
  EXPECT_EQ(r.text, kRecipe);
}

TEST(RecipeTest, TrainsTheStartModelWhenGivenAnArch) {
  const auto r = pipeline::parse_recipe(
      "model: {arch: lenet5-small, train: {epochs: 3, lr: 0.002}}\nstages: [quantize: ]\noutput: "
      "o.h5\n",
      pipeline::default_registry());
  EXPECT_TRUE(r.model.path.empty());
  EXPECT_EQ(r.model.arch, "lenet5-small");
  EXPECT_EQ(r.model.train.epochs, 3);
  EXPECT_DOUBLE_EQ(r.model.train.lr, 0.002);
  EXPECT_EQ(r.stages[0].options.at("mode").get<std::string>(), "int8-static");  // all defaults
}

TEST(RecipeTest, SetOverridesAValueAndIsRecorded) {
  const auto r = pipeline::parse_recipe(kRecipe, pipeline::default_registry(),
                                        {"stages[0].quantize.observer=mse", "seed=9"});
  EXPECT_EQ(r.stages[0].options.at("observer").get<std::string>(), "mse");
  EXPECT_EQ(r.seed, 9u);
  EXPECT_NE(r.text.find("# --set stages[0].quantize.observer=mse\n"), std::string::npos);
  EXPECT_NE(r.digest(), pipeline::parse_recipe(kRecipe, pipeline::default_registry()).digest());
  ASSERT_THROWS_WITH(pipeline::parse_recipe(kRecipe, pipeline::default_registry(),
                                            {"stages[3].quantize.mode=fp16"}),
                     ConfigError, "stages[3] does not exist (1 entries)");
  ASSERT_THROWS_WITH(
      pipeline::parse_recipe(kRecipe, pipeline::default_registry(), {"stages[0].quantize.mode"}),
      ConfigError, "expected PATH=VALUE");
  ASSERT_THROWS_WITH(pipeline::parse_recipe(kRecipe, pipeline::default_registry(),
                                            {"stages[0].quantize.mode=int4"}),
                     ConfigError, "stages[0].quantize.mode (--set): must be one of");
}

TEST(RecipeTest, RejectsBadRecipesWithPathAndLine) {
  const auto& reg = pipeline::default_registry();
  auto parse = [&](const std::string& text) {
    return pipeline::parse_recipe(text, reg, {}, "r.yaml");
  };
  ASSERT_THROWS_WITH(parse("model: m.h5\nstages:\n  - sharpen: {}\noutput: o.h5\n"), ConfigError,
                     "stages[0] (line 3): unknown stage 'sharpen'");
  ASSERT_THROWS_WITH(parse("model: m.h5\nstages:\n  - quantize: {mode: int4}\noutput: o.h5\n"),
                     ConfigError, "stages[0].quantize.mode (line 3): must be one of");
  ASSERT_THROWS_WITH(parse("model: m.h5\nstages:\n  - quantize:\n      epochs: 0\noutput: o.h5\n"),
                     ConfigError,
                     "stages[0].quantize.epochs (line 4): must be in [1, 1000], got 0");
  ASSERT_THROWS_WITH(parse("model: m.h5\nstages: []\noutput: o.h5\n"), ConfigError,
                     "stages (line 2): expected a non-empty list");
  ASSERT_THROWS_WITH(parse("model: m.h5\nstages: [quantize: ]\n"), ConfigError,
                     "output (line 1): required option missing");
  ASSERT_THROWS_WITH(parse("model: m.h5\nstages: [quantize: ]\noutput: o.h5\nsede: 3\n"),
                     ConfigError, "sede (line 4): unknown option");
  ASSERT_THROWS_WITH(
      parse("model: m.h5\ndata: {calib_batches: 0}\nstages: [quantize: ]\noutput: o.h5\n"),
      ConfigError, "data.calib_batches (line 2): must be >= 1, got 0");
  ASSERT_THROWS_WITH(
      parse("model: m.h5\ndata: {val_fraction: 0}\nstages: [quantize: ]\noutput: o.h5\n"),
      ConfigError, "data.val_fraction (line 2): must be > 0");
  ASSERT_THROWS_WITH(
      parse("model: m.h5\nguard: {on_violation: shrug}\nstages: [quantize: ]\noutput: o.h5\n"),
      ConfigError, "guard.on_violation (line 2): must be one of fail, skip");
  ASSERT_THROWS_WITH(parse("model: m.h5\nstages: [quantize: ]\noutput: m.h5\n"), ConfigError,
                     "output: must differ from the input model");
  ASSERT_THROWS_WITH(parse("model: [1\nstages: x\n"), ConfigError, "r.yaml: line ");
  ASSERT_THROWS_WITH(parse("model: m.h5\nstages:\n  - distill: {student: lenet9}\noutput: o.h5\n"),
                     ConfigError,
                     "stages[0].distill.student (line 3): 'lenet9' is neither a zoo model");
  ASSERT_THROWS_WITH(parse("model: m.h5\nstages:\n  - distill: {temperature: 0}\noutput: o.h5\n"),
                     ConfigError, "stages[0].distill.temperature (line 3): must be in");
  ASSERT_THROWS_WITH(pipeline::load_recipe("/nonexistent/r.yaml", reg), IoError,
                     "cannot read recipe '/nonexistent/r.yaml'");
}

TEST(RecipeTest, CodebookModeOptionsAndOrder) {
  const auto& reg = pipeline::default_registry();
  auto parse = [&](const std::string& stages) {
    return pipeline::parse_recipe("model: m.h5\nstages:\n" + stages + "output: o.h5\n", reg, {},
                                  "r.yaml");
  };
  EXPECT_NO_THROW(
      parse("  - prune: {target: 0.9}\n  - quantize: {mode: codebook, bits: 3, epochs: 0}\n"));
  ASSERT_THROWS_WITH(parse("  - quantize: {mode: codebook, bits: 9}\n"), ConfigError,
                     "stages[0].quantize.bits (line 3): must be in [2, 8], got 9");
  ASSERT_THROWS_WITH(parse("  - quantize: {mode: qat, epochs: 0}\n"), ConfigError,
                     "stages[0].quantize.epochs (line 3): must be in [1, 1000], got 0");
  // Shared values are decided per weight; pruning afterwards would change them.
  const auto late = parse("  - quantize: {mode: codebook}\n  - prune: {target: 0.9}\n");
  EXPECT_NE(pipeline::check_stage_order(late, ModelTraits{})
                .find("codebook encoding is already decided; prune before quantize"),
            std::string::npos);
}

// Found while writing fuzz_recipe; kept in fuzz/regressions/fuzz_recipe/ too. yaml-cpp and
// std::stoul used to throw their own untyped exceptions (CLI exit 1, "bad conversion" / "stoul")
// instead of a ConfigError with the path and line.
TEST(RecipeTest, NonScalarKeysAndHugeSetIndicesAreConfigErrors) {
  const auto& reg = pipeline::default_registry();
  auto parse = [&](const std::string& text) {
    return pipeline::parse_recipe(text, reg, {}, "r.yaml");
  };
  ASSERT_THROWS_WITH(parse("model: m.h5\nstages:\n  - prune: {[a]: 1}\noutput: o.h5\n"),
                     ConfigError, "stages[0].prune (line 3): keys must be plain names, got a list");
  ASSERT_THROWS_WITH(parse("{[a]: 1}\n"), ConfigError, "keys must be plain names");
  ASSERT_THROWS_WITH(parse("model: m.h5\nstages:\n  - {[a]: 1}\noutput: o.h5\n"), ConfigError,
                     "stages[0] (line 3): expected a stage name, got a list");
  ASSERT_THROWS_WITH(pipeline::parse_recipe("model: m.h5\nstages: [prune: ]\noutput: o.h5\n", reg,
                                            {"stages[99999999999999999999].prune.target=0.5"}),
                     ConfigError, "index [99999999999999999999] is out of range");
}

// Found by fuzz_recipe (fuzz/regressions/fuzz_recipe/stray-comma-endless-documents.yaml): with a
// stray ',' before the first key, yaml-cpp's LoadAll returns documents for ever (24 GB, then
// killed). A recipe is one document; counting stops at the second.
TEST(RecipeTest, MoreThanOneDocumentIsRefusedWithoutReadingThemAll) {
  const auto& reg = pipeline::default_registry();
  ASSERT_THROWS_WITH(
      pipeline::parse_recipe(",odel: m.h5\nstages: [prune: ]\noutput: o.h5\n", reg, {}, "r.yaml"),
      ConfigError, "r.yaml: holds more than one YAML document");
  ASSERT_THROWS_WITH(pipeline::parse_recipe("model: m.h5\nstages: [prune: ]\noutput: o.h5\n---\n"
                                            "seed: 1\n",
                                            reg, {}, "r.yaml"),
                     ConfigError, "r.yaml: holds more than one YAML document");
}

TEST(RecipeTest, StageOrderIsCheckedBeforeAnythingRuns) {
  const auto r = pipeline::parse_recipe(
      "model: m.h5\nstages:\n  - quantize: {mode: fp16}\n  - quantize: {mode: "
      "int8-static}\noutput: o.h5\n",
      pipeline::default_registry());
  const std::string why = pipeline::check_stage_order(r, ModelTraits{});
  EXPECT_NE(why.find("stages[1].quantize: the model is already quantized (fp16)"),
            std::string::npos)
      << why;
  ModelTraits quantized;
  quantized.quant_mode = "int8-static";
  const auto one = pipeline::parse_recipe("model: m.h5\nstages: [quantize: ]\noutput: o.h5\n",
                                          pipeline::default_registry());
  EXPECT_EQ(pipeline::check_stage_order(one, ModelTraits{}), "");
  EXPECT_NE(pipeline::check_stage_order(one, quantized).find("stages[0].quantize"),
            std::string::npos);

  // prune -> quantize -> prune: the second prune would change int8-encoded weights.
  const auto ppq = pipeline::parse_recipe(
      "model: m.h5\nstages:\n  - prune: {target: 0.5}\n  - quantize: {mode: int8-static}\n"
      "  - prune: {target: 0.8}\noutput: o.h5\n",
      pipeline::default_registry());
  EXPECT_NE(pipeline::check_stage_order(ppq, ModelTraits{})
                .find("stages[2].prune: pruning would change weights whose int8-static encoding"),
            std::string::npos);
  // ... while prune -> prune -> quantize is fine.
  const auto ppq_ok = pipeline::parse_recipe(
      "model: m.h5\nstages:\n  - prune: {target: 0.5}\n  - prune: {target: 0.8}\n"
      "  - quantize: {mode: int8-static}\noutput: o.h5\n",
      pipeline::default_registry());
  EXPECT_EQ(pipeline::check_stage_order(ppq_ok, ModelTraits{}), "");
}

}  // namespace
}  // namespace mcompress
